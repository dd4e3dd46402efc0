//! Live top hits: the request's `size` hits and the `top_hits` aggregation.
//!
//! The partial state is the exact hit count plus the best `size` hits under a total order (the
//! sort keys, then `@offset`, then `@partition`, which no two records share). Merging two
//! states keeps the best `size` of their union, so merge is associative and commutative and any
//! split of the log gives the one-pass answer.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::eval::Doc;
use crate::request::{Order, SortSpec, SourceFilter};
use crate::scan::Scalar;
use crate::value::SortValue;

/// One kept hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hit {
    sort: Vec<Option<SortValue>>,
    partition: i32,
    offset: i64,
    key: Option<String>,
    /// The filtered `_source`, as JSON text (compact to store, parsed only to render).
    source: String,
}

impl Hit {
    fn heap_bytes(&self) -> usize {
        96 + self.source.len() + self.key.as_ref().map_or(0, String::len)
    }
}

/// Exact count plus best hits, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct TopHits {
    pub(crate) total: u64,
    hits: Vec<Hit>,
}

fn compare(a: &Hit, b: &Hit, specs: &[SortSpec]) -> Ordering {
    for (i, spec) in specs.iter().enumerate() {
        let ord = match spec.field {
            None => (a.offset, a.partition).cmp(&(b.offset, b.partition)),
            Some(_) => match (&a.sort[i], &b.sort[i]) {
                // Kinds keep their order in either direction; only values within one turn.
                (Some(x), Some(y)) if x.kind_rank() != y.kind_rank() => {
                    return x.kind_rank().cmp(&y.kind_rank());
                }
                (Some(x), Some(y)) => x.cmp_total(y),
                (None, None) => Ordering::Equal,
                // Missing values go last (or first) whatever the direction.
                (None, Some(_)) => {
                    return if spec.missing_first { Ordering::Less } else { Ordering::Greater };
                }
                (Some(_), None) => {
                    return if spec.missing_first { Ordering::Greater } else { Ordering::Less };
                }
            },
        };
        let ord = if spec.order == Order::Desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    (a.offset, a.partition).cmp(&(b.offset, b.partition))
}

fn sort_value(values: &[Scalar<'_>], spec: &SortSpec) -> Option<SortValue> {
    let mut best: Option<SortValue> = None;
    for v in values.iter().filter_map(SortValue::from_scalar) {
        best = Some(match best {
            None => v,
            Some(b) => {
                let better = if spec.mode_max {
                    v.cmp_total(&b) == Ordering::Greater
                } else {
                    v.cmp_total(&b) == Ordering::Less
                };
                if better { v } else { b }
            }
        });
    }
    best
}

impl TopHits {
    /// Count `doc` and keep it if it ranks among the best `size`. Returns the change in
    /// estimated heap bytes.
    pub(crate) fn add(
        &mut self,
        doc: &Doc<'_, '_>,
        size: usize,
        specs: &[SortSpec],
        source: &SourceFilter,
    ) -> isize {
        self.total += 1;
        if size == 0 {
            return 0;
        }
        let sort: Vec<Option<SortValue>> = specs
            .iter()
            .map(|s| s.field.as_ref().and_then(|f| sort_value(doc.values(f), s)))
            .collect();
        let mut hit = Hit {
            sort,
            partition: doc.record.partition,
            offset: doc.record.offset,
            key: doc.key_text().map(|k| k.into_owned()),
            source: String::new(),
        };
        let pos = match self.hits.binary_search_by(|h| compare(h, &hit, specs)) {
            Ok(_) => return 0, // the same record folded twice: never counted twice in the list
            Err(pos) => pos,
        };
        if pos >= size {
            return 0;
        }
        hit.source = render_source(doc.record.value, source);
        let mut delta = hit.heap_bytes() as isize;
        self.hits.insert(pos, hit);
        while self.hits.len() > size {
            if let Some(h) = self.hits.pop() {
                delta -= h.heap_bytes() as isize;
            }
        }
        delta
    }

    /// Merge another state of the same request (same size and sort).
    pub(crate) fn merge(&mut self, other: &TopHits, size: usize, specs: &[SortSpec]) {
        self.total += other.total;
        if other.hits.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity((self.hits.len() + other.hits.len()).min(size));
        let (mut a, mut b) = (self.hits.drain(..).peekable(), other.hits.iter().peekable());
        while merged.len() < size {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => compare(x, y, specs) != Ordering::Greater,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_a {
                merged.extend(a.next());
            } else {
                merged.extend(b.next().cloned());
            }
        }
        drop(a);
        self.hits = merged;
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.hits.iter().map(Hit::heap_bytes).sum()
    }

    /// Elasticsearch's `hits` object.
    pub(crate) fn render(&self, topic: &str, specs: &[SortSpec], source: &SourceFilter) -> Value {
        let hits: Vec<Value> = self
            .hits
            .iter()
            .map(|h| {
                let mut m = Map::new();
                m.insert("_index".into(), json!(topic));
                m.insert(
                    "_id".into(),
                    json!(h.key.clone().unwrap_or_else(|| format!("{}-{}", h.partition, h.offset))),
                );
                if !source.disabled {
                    m.insert(
                        "_source".into(),
                        serde_json::from_str(&h.source).unwrap_or(Value::Null),
                    );
                }
                m.insert("@offset".into(), json!(h.offset));
                m.insert("@partition".into(), json!(h.partition));
                if !specs.is_empty() {
                    let sort: Vec<Value> = specs
                        .iter()
                        .zip(&h.sort)
                        .map(|(s, v)| match (&s.field, v) {
                            (None, _) => json!(h.offset),
                            (Some(_), Some(v)) => v.to_json(),
                            (Some(_), None) => Value::Null,
                        })
                        .collect();
                    m.insert("sort".into(), Value::Array(sort));
                }
                Value::Object(m)
            })
            .collect();
        json!({"total": {"value": self.total, "relation": "eq"}, "hits": hits})
    }
}

/// The `_source` of a record after `_source` filtering, as JSON text.
///
/// The record was already validated by the scanner, so without a filter its bytes are the
/// source; with one, kept members are copied as raw JSON slices without building a tree (a full
/// parse is the slow path, taken only for partial includes inside arrays).
fn render_source(bytes: &[u8], filter: &SourceFilter) -> String {
    if filter.disabled {
        return String::new();
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return "null".into() };
    if filter.includes.is_empty() && filter.excludes.is_empty() {
        return text.trim().to_string();
    }
    if let Some(s) = filter_raw(text, "", filter) {
        return s;
    }
    let Ok(mut value) = serde_json::from_str::<Value>(text) else { return "null".into() };
    filter_object(&mut value, "", filter);
    value.to_string()
}

/// An object's members in document order, values as raw JSON.
struct RawMembers<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(RawMembers(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Filter an object given as raw JSON; None when a partial include reaches into an array.
fn filter_raw(raw: &str, prefix: &str, filter: &SourceFilter) -> Option<String> {
    let members: RawMembers<'_> = serde_json::from_str(raw).ok()?;
    let mut out = String::with_capacity(raw.len().min(1024));
    out.push('{');
    for (k, v) in members.0 {
        let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
        if filter.excludes.iter().any(|p| glob(p, &path)) {
            continue;
        }
        let fully = filter.includes.is_empty() || filter.includes.iter().any(|p| glob(p, &path));
        let below = format!("{path}.");
        let partial = !fully
            && filter
                .includes
                .iter()
                .any(|p| p.starts_with(&below) || glob(&format!("{p}.*"), &path));
        let excludes_below =
            filter.excludes.iter().any(|p| p.starts_with(&below) || p.starts_with('*'));
        let kept = if fully && !excludes_below {
            Some(v.get().to_string())
        } else if fully || partial {
            match v.get().as_bytes().first() {
                Some(b'{') => {
                    let sub = if fully {
                        SourceFilter { includes: Vec::new(), ..filter.clone() }
                    } else {
                        filter.clone()
                    };
                    filter_raw(v.get(), &path, &sub).filter(|s| fully || s != "{}")
                }
                Some(b'[') => return None,
                _ if fully => Some(v.get().to_string()),
                _ => None,
            }
        } else {
            None
        };
        if let Some(kept) = kept {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k.as_ref()).ok()?);
            out.push(':');
            out.push_str(&kept);
        }
    }
    out.push('}');
    Some(out)
}

fn filter_object(v: &mut Value, prefix: &str, filter: &SourceFilter) {
    let Value::Object(map) = v else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if filter.excludes.iter().any(|p| glob(p, &path)) {
            map.remove(&k);
            continue;
        }
        let included = filter.includes.is_empty()
            || filter.includes.iter().any(|p| {
                glob(p, &path)
                    || p.starts_with(&format!("{path}."))
                    || glob(&format!("{p}.*"), &path)
            });
        if !included {
            map.remove(&k);
            continue;
        }
        let fully = filter.includes.is_empty() || filter.includes.iter().any(|p| glob(p, &path));
        let child = map.get_mut(&k).expect("key listed above");
        if fully && filter.excludes.is_empty() {
            continue;
        }
        let sub = if fully {
            SourceFilter { includes: Vec::new(), ..filter.clone() }
        } else {
            filter.clone()
        };
        match child {
            Value::Object(_) => filter_object(child, &path, &sub),
            Value::Array(items) => items.iter_mut().for_each(|i| filter_object(i, &path, &sub)),
            _ => {}
        }
        if !fully && matches!(map.get(&k), Some(Value::Object(m)) if m.is_empty()) {
            map.remove(&k);
        }
    }
}

/// `*` wildcard match of a source pattern against a dotted path.
fn glob(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            path.starts_with(head)
                && (0..=path.len() - head.len()).any(|i| {
                    path.is_char_boundary(head.len() + i) && glob(tail, &path[head.len() + i..])
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_filter_keeps_includes_and_drops_excludes() {
        let f = SourceFilter {
            disabled: false,
            includes: vec!["text".into(), "user.screen_name".into()],
            excludes: vec![],
        };
        let s =
            render_source(br#"{"text":"hi","lang":"en","user":{"screen_name":"a","id":1}}"#, &f);
        assert_eq!(s, r#"{"text":"hi","user":{"screen_name":"a"}}"#);
        let f = SourceFilter {
            disabled: false,
            includes: vec!["user.*".into()],
            excludes: vec!["user.id".into()],
        };
        let s = render_source(br#"{"text":"hi","user":{"screen_name":"a","id":1}}"#, &f);
        assert_eq!(s, r#"{"user":{"screen_name":"a"}}"#);
    }

    #[test]
    fn raw_filtering_agrees_with_tree_filtering() {
        let doc = br#"{"text":"hi \"x\"","lang":"en","user":{"screen_name":"a","id":1,"loc":{"c":"GB"}},"tags":[{"t":1}],"n":null}"#;
        let filters = [
            (vec!["text", "user.screen_name"], vec![]),
            (vec!["user.*"], vec!["user.id"]),
            (vec![], vec!["user"]),
            (vec!["user"], vec!["user.loc.c"]),
            (vec!["tags.t"], vec![]),
            (vec!["n", "missing"], vec![]),
        ];
        for (inc, exc) in filters {
            let f = SourceFilter {
                disabled: false,
                includes: inc.iter().map(|s| s.to_string()).collect(),
                excludes: exc.iter().map(|s| s.to_string()).collect(),
            };
            let mut tree: Value = serde_json::from_slice(doc).expect("valid");
            filter_object(&mut tree, "", &f);
            let fast: Value = serde_json::from_str(&render_source(doc, &f)).expect("valid output");
            assert_eq!(fast, tree, "includes {inc:?} excludes {exc:?}");
        }
    }

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob("user.*", "user.name"));
        assert!(glob("*name", "user.name"));
        assert!(!glob("user.*", "users"));
    }
}
