//! A corpus: the documents one comparison runs over, as Kappa's records and as an index.
//!
//! Kappa has no mapping; OpenSearch needs one. The mapping states what Kappa infers from the
//! values themselves (numbers, booleans, dates in the formats used, strings), so that both
//! engines see the same types. A field whose values have several JSON types has no such
//! mapping: [`Corpus::new`] refuses it (difference 13 of [`crate::differences`]).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use anyhow::{Result, bail};
use kappa_core::Record;
use kappa_core::date::{DateFormat, TimeZone};
use serde_json::{Map, Value, json};

use crate::opensearch::OpenSearch;

/// Default log timestamp of the document at index `i` (as the golden cases use).
pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// Twitter's `created_at` format, which Kappa reads given a `format` or `runtime_mappings`.
pub const TWITTER_FORMAT: &str = "EEE MMM dd HH:mm:ss Z yyyy";

/// Version of how documents are indexed (part of the index name: a change rebuilds indices).
const INDEX_LAYOUT: u32 = 3;

/// One document with its log metadata.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The JSON document.
    pub source: Value,
    /// Log timestamp, epoch ms.
    pub timestamp: i64,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<String>,
}

impl Doc {
    /// The hit `_id` Kappa gives this record.
    pub fn id(&self) -> String {
        self.key.clone().unwrap_or_else(|| format!("{}-{}", self.partition, self.offset))
    }
}

/// Documents plus the index mapping that states their types.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The documents, in log order.
    pub docs: Vec<Doc>,
    /// Serialised values (Kappa's records).
    values: Vec<Vec<u8>>,
    /// The `mappings` of the index.
    pub mapping: Value,
    /// Index name: a hash of documents and mapping, so an index is built once and reused.
    pub index: String,
    /// Whether record keys are unique (then the index's `_id` is Kappa's `_id`).
    pub keys_unique: bool,
}

/// How a string field is mapped: `text` with a `keyword` sub-field when a query reads it as
/// full text, otherwise `keyword` (Kappa compares a string field's exact value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StringRole {
    /// `keyword`.
    Exact,
    /// `text` + `.keyword`.
    FullText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Bool,
    Long,
    Double,
    DateIso,
    DateTwitter,
    Str,
}

impl Corpus {
    /// A corpus over `docs`; `roles` says which string fields are full text (others are
    /// exact); `dates` forces a date mapping with that format on fields whose strings Kappa
    /// reads as dates only given the format.
    pub fn new(docs: Vec<Doc>, roles: &BTreeMap<String, StringRole>) -> Result<Corpus> {
        let mut kinds: BTreeMap<String, BTreeSet<Kind>> = BTreeMap::new();
        for d in &docs {
            collect_kinds(&d.source, "", &mut kinds);
        }
        let mut properties = Map::new();
        for (path, ks) in &kinds {
            let ks: BTreeSet<Kind> = ks.clone();
            // Epoch numbers in a field of date strings are dates to Kappa too.
            let date_numbers = |d: Kind| ks.iter().all(|k| *k == d || *k == Kind::Long);
            let mapping = if ks.len() == 1 && ks.contains(&Kind::Bool) {
                json!({"type": "boolean"})
            } else if ks.iter().all(|k| matches!(k, Kind::Long)) {
                json!({"type": "long"})
            } else if ks.iter().all(|k| matches!(k, Kind::Long | Kind::Double)) {
                json!({"type": "double"})
            } else if ks.contains(&Kind::DateIso) && date_numbers(Kind::DateIso) {
                json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"})
            } else if ks.contains(&Kind::DateTwitter)
                && ks.iter().all(|k| matches!(k, Kind::DateTwitter | Kind::Long | Kind::Str))
            {
                // Kappa renders `key_as_string` in the default format unless the request names
                // one, so that format comes first; a string that is no date counts as missing.
                json!({"type": "date", "ignore_malformed": true,
                    "format": format!("strict_date_optional_time||{TWITTER_FORMAT}||epoch_millis")})
            } else if ks.iter().all(|k| matches!(k, Kind::Str | Kind::DateIso | Kind::DateTwitter))
            {
                match roles.get(path.as_str()).copied().unwrap_or(StringRole::Exact) {
                    // `x.keyword` of a string field is its exact value to Kappa either way.
                    StringRole::Exact => json!({"type": "keyword",
                        "fields": {"keyword": {"type": "keyword", "ignore_above": 32766}}}),
                    StringRole::FullText => json!({"type": "text",
                        "fields": {"keyword": {"type": "keyword", "ignore_above": 32766}}}),
                }
            } else {
                bail!("field [{path}] holds values of several types: {ks:?}");
            };
            insert_path(&mut properties, path, mapping);
        }
        for (name, mapping) in [
            (
                "@timestamp",
                json!({"type": "date", "format": "strict_date_optional_time||epoch_millis"}),
            ),
            ("@offset", json!({"type": "long"})),
            ("@partition", json!({"type": "long"})),
            ("@key", json!({"type": "keyword"})),
        ] {
            properties.insert(name.into(), mapping);
        }
        let mapping = json!({"dynamic": false, "properties": properties});
        let values: Vec<Vec<u8>> =
            docs.iter().map(|d| serde_json::to_vec(&d.source).expect("JSON")).collect();
        let mut h = DefaultHasher::new();
        (INDEX_LAYOUT, mapping.to_string()).hash(&mut h);
        for (d, v) in docs.iter().zip(&values) {
            (v, d.timestamp, d.partition, d.offset, &d.key).hash(&mut h);
        }
        let index = format!("kappa-diff-{:016x}", h.finish());
        let keys: BTreeSet<String> = docs.iter().map(Doc::id).collect();
        let keys_unique = keys.len() == docs.len();
        Ok(Corpus { docs, values, mapping, index, keys_unique })
    }

    /// Kappa's records.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        self.docs.iter().zip(&self.values).map(|(d, v)| Record {
            value: v,
            timestamp: d.timestamp,
            offset: d.offset,
            partition: d.partition,
            key: d.key.as_deref().map(str::as_bytes),
        })
    }

    /// Make sure the index exists with exactly these documents (built once, then reused).
    pub fn ensure_index(&self, os: &mut OpenSearch) -> Result<()> {
        let (status, count) = os.request("GET", &format!("/{}/_count", self.index), None)?;
        if status == 200 && count["count"].as_u64() == Some(self.docs.len() as u64) {
            return Ok(());
        }
        if status == 200 {
            os.ok("DELETE", &format!("/{}", self.index), None)?;
        }
        let settings = json!({
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": self.mapping,
        });
        os.ok("PUT", &format!("/{}", self.index), Some(&settings.to_string()))?;
        if self.docs.is_empty() {
            return Ok(());
        }
        let mut bulk = String::new();
        for d in &self.docs {
            // Keys may repeat in a log; the index's `_id` must not, so it is always the position.
            bulk.push_str(&json!({"index": {"_id": index_id(self.keys_unique, d)}}).to_string());
            bulk.push('\n');
            bulk.push_str(&with_virtual_fields(d).to_string());
            bulk.push('\n');
        }
        let r = os.ok("POST", &format!("/{}/_bulk?refresh=true", self.index), Some(&bulk))?;
        if r["errors"] == Value::Bool(true) {
            bail!("bulk indexing into {} failed: {r}", self.index);
        }
        Ok(())
    }

    /// Every value of a dotted path over the corpus (arrays flattened), for tolerances.
    pub fn numbers_of(&self, path: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for d in &self.docs {
            collect_numbers(&d.source, path, &mut out);
        }
        out.sort_by(f64::total_cmp);
        out
    }
}

/// The `_id` of a document in the index: Kappa's `_id` (the key, or `partition-offset`) when
/// keys are unique in the corpus, so `ids` queries mean the same; else `partition-offset`.
pub fn index_id(corpus_keys_unique: bool, d: &Doc) -> String {
    if corpus_keys_unique { d.id() } else { format!("{}-{}", d.partition, d.offset) }
}

/// The document as indexed: Kappa's virtual fields become real ones so queries on them work.
/// `@timestamp` goes in as an ISO string: as a number of at most four digits, Elasticsearch's
/// default date format would read it as a year (difference 16 of [`crate::differences`]).
fn with_virtual_fields(d: &Doc) -> Value {
    let mut v = d.source.clone();
    if let Value::Object(m) = &mut v {
        let iso = DateFormat::default_format().format_millis(d.timestamp, &TimeZone::utc());
        m.insert("@timestamp".into(), json!(iso));
        m.insert("@offset".into(), json!(d.offset));
        m.insert("@partition".into(), json!(d.partition));
        if let Some(k) = &d.key {
            m.insert("@key".into(), json!(k));
        }
    }
    v
}

/// The virtual field names, dropped from OpenSearch's `_source` before comparing.
pub const VIRTUAL_FIELDS: [&str; 4] = ["@timestamp", "@offset", "@partition", "@key"];

fn date_kind(s: &str) -> Option<Kind> {
    static ISO: std::sync::LazyLock<DateFormat> = std::sync::LazyLock::new(|| {
        DateFormat::parse("strict_date_optional_time").expect("named format")
    });
    static TWITTER: std::sync::LazyLock<DateFormat> =
        std::sync::LazyLock::new(|| DateFormat::parse(TWITTER_FORMAT).expect("pattern"));
    let utc = TimeZone::utc();
    if ISO.parse_millis(s, &utc).is_some() {
        Some(Kind::DateIso)
    } else if TWITTER.parse_millis(s, &utc).is_some() {
        Some(Kind::DateTwitter)
    } else {
        None
    }
}

fn collect_kinds(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<Kind>>) {
    let kind = match v {
        Value::Null => return,
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                collect_kinds(x, &p, out);
            }
            return;
        }
        Value::Array(a) => {
            for x in a {
                collect_kinds(x, path, out);
            }
            return;
        }
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Long,
        Value::Number(_) => Kind::Double,
        Value::String(s) => date_kind(s).unwrap_or(Kind::Str),
    };
    out.entry(path.to_string()).or_default().insert(kind);
}

fn insert_path(props: &mut Map<String, Value>, path: &str, mapping: Value) {
    match path.split_once('.') {
        None => {
            props.insert(path.to_string(), mapping);
        }
        Some((head, rest)) => {
            let entry = props.entry(head.to_string()).or_insert_with(|| json!({"properties": {}}));
            if let Some(Value::Object(inner)) = entry.get_mut("properties") {
                insert_path(inner, rest, mapping);
            }
        }
    }
}

fn collect_numbers(v: &Value, path: &str, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_numbers(x, path, out)),
        Value::Object(m) => {
            if let Some(x) = m.get(path) {
                collect_numbers(x, "", out);
            } else if let Some((head, rest)) = path.split_once('.')
                && let Some(x) = m.get(head)
            {
                collect_numbers(x, rest, out);
            }
        }
        Value::Number(n) if path.is_empty() => out.extend(n.as_f64()),
        _ => {}
    }
}

/// How a request reads each string field: full text (`match`, `match_phrase`,
/// `multi_match`) or exact (everything else; `x.keyword` is a sub-field either way). `Err`
/// names a field read both ways (difference 14 of [`crate::differences`]).
pub fn string_roles(request: &Value) -> Result<BTreeMap<String, StringRole>, String> {
    let mut full_text = BTreeSet::new();
    let mut exact = BTreeSet::new();
    walk_fields(request, &mut full_text, &mut exact);
    if let Some(f) = full_text.iter().find(|f| exact.contains(*f)) {
        return Err(format!("field [{f}] is read both as full text and as an exact value"));
    }
    Ok(full_text.into_iter().map(|f| (f, StringRole::FullText)).collect())
}

fn walk_fields(v: &Value, full_text: &mut BTreeSet<String>, exact: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("match" | "match_phrase", Value::Object(q)) => {
                        full_text.extend(q.keys().cloned());
                    }
                    ("multi_match", Value::Object(q)) => {
                        if let Some(Value::Array(fs)) = q.get("fields") {
                            for f in fs.iter().filter_map(Value::as_str) {
                                full_text.insert(f.split('^').next().unwrap_or(f).to_string());
                            }
                        }
                    }
                    // An aggregation (`terms`, `range`) names its field; a query is keyed by it.
                    ("term" | "terms" | "range" | "prefix" | "wildcard", Value::Object(q))
                        if !q.contains_key("field") =>
                    {
                        exact.extend(q.keys().filter(|k| *k != "boost").cloned());
                    }
                    ("field", Value::String(f)) => {
                        exact.insert(f.clone());
                    }
                    ("sort", s) => {
                        let items = match s {
                            Value::Array(a) => a.clone(),
                            other => vec![other.clone()],
                        };
                        for item in items {
                            match item {
                                Value::String(f) => {
                                    exact.insert(f);
                                }
                                Value::Object(o) => exact.extend(o.keys().cloned()),
                                _ => {}
                            }
                        }
                    }
                    _ => walk_fields(x, full_text, exact),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk_fields(x, full_text, exact)),
        _ => {}
    }
}
