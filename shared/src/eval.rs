//! Evaluation of queries against one record, and the byte-level pre-filter.
//!
//! A [`Doc`] is a record with the values of the paths the request reads, extracted lazily by
//! [`crate::scan`]; the document is never materialised as a tree. Missing fields and values of
//! the wrong type simply don't match.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;

use crate::date::DateFormat;
use crate::request::{Bound, FieldRef, Query, RangeKind};
use crate::scan::{Extracted, Scalar};
use crate::text;
use crate::value::scalar_f64;

/// One log record as the core sees it: value bytes plus the log's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record value (one JSON document, if valid).
    pub value: &'a [u8],
    /// Log timestamp, epoch ms (`@timestamp`).
    pub timestamp: i64,
    /// Offset in its partition (`@offset`).
    pub offset: i64,
    /// Partition (`@partition`).
    pub partition: i32,
    /// Record key (`@key`), if any.
    pub key: Option<&'a [u8]>,
}

/// A record with the values of the request's paths extracted.
pub(crate) struct Doc<'a, 'r> {
    pub(crate) record: &'a Record<'r>,
    ext: &'a Extracted<'r>,
    virtuals: [Scalar<'r>; 4],
}

impl<'a, 'r> Doc<'a, 'r> {
    pub(crate) fn new(record: &'a Record<'r>, ext: &'a Extracted<'r>) -> Self {
        let key = match record.key {
            Some(k) => Scalar::Str(String::from_utf8_lossy(k)),
            None => Scalar::Null,
        };
        Doc {
            record,
            ext,
            virtuals: [
                Scalar::Int(record.timestamp),
                Scalar::Int(record.offset),
                Scalar::Int(i64::from(record.partition)),
                key,
            ],
        }
    }

    /// Every value of `field` (flattened), possibly empty.
    pub(crate) fn values(&self, field: &FieldRef) -> &[Scalar<'r>] {
        match field {
            FieldRef::Timestamp => &self.virtuals[0..1],
            FieldRef::Offset => &self.virtuals[1..2],
            FieldRef::Partition => &self.virtuals[2..3],
            FieldRef::Key => match self.virtuals[3] {
                Scalar::Null => &[],
                _ => &self.virtuals[3..4],
            },
            FieldRef::Path { slot, fallback, .. } => {
                let own = self.ext.values(*slot);
                match fallback {
                    Some(base) if own.is_empty() => self.ext.values(*base),
                    _ => own,
                }
            }
        }
    }

    pub(crate) fn key_text(&self) -> Option<Cow<'r, str>> {
        match &self.virtuals[3] {
            Scalar::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// A document value as epoch ms, for date fields: numbers through the format (epoch millis
/// unless it says epoch_second), strings parsed with the format.
pub(crate) fn date_millis(
    v: &Scalar<'_>,
    format: &DateFormat,
    tz: &crate::date::TimeZone,
) -> Option<i64> {
    match v {
        Scalar::Int(i) => format.number_to_millis(*i as f64),
        Scalar::Float(f) => format.number_to_millis(*f),
        Scalar::Str(s) => format.parse_millis(s, tz),
        _ => None,
    }
}

/// Whether `doc` matches `query`.
pub(crate) fn matches(query: &Query, doc: &Doc<'_, '_>) -> bool {
    match query {
        Query::MatchAll => true,
        Query::MatchNone => false,
        Query::Term { field, value, case_insensitive } => {
            doc.values(field).iter().any(|v| value.matches(v, *case_insensitive))
        }
        Query::Terms { field, values } => {
            doc.values(field).iter().any(|v| values.iter().any(|t| t.matches(v, false)))
        }
        Query::Range { field, kind, gt, gte, lt, lte } => {
            doc.values(field).iter().any(|v| in_range(v, kind, gt, gte, lt, lte))
        }
        Query::Exists { field } => doc.values(field).iter().any(|v| !matches!(v, Scalar::Null)),
        Query::Prefix { field, value, case_insensitive } => {
            doc.values(field).iter().any(|v| match v {
                Scalar::Str(s) if *case_insensitive => {
                    text::lowercase(s).starts_with(&text::lowercase(value))
                }
                Scalar::Str(s) => s.starts_with(value.as_str()),
                _ => false,
            })
        }
        Query::Wildcard { field, regex, .. } => doc.values(field).iter().any(|v| match v {
            Scalar::Str(s) => regex.is_match(s),
            _ => false,
        }),
        Query::Ids { values } => {
            doc.key_text().is_some_and(|k| values.iter().any(|v| v == k.as_ref()))
        }
        Query::Match { field, query, tokens, and, minimum_should_match } => {
            let required = required_tokens(tokens.len(), *and, *minimum_should_match);
            match_field(doc.values(field), query, tokens, required)
        }
        Query::MatchPhrase { field, tokens, .. } => {
            !tokens.is_empty()
                && doc.values(field).iter().any(|v| match v {
                    Scalar::Str(s) => contains_phrase(s, tokens),
                    _ => false,
                })
        }
        Query::MultiMatch { fields, query, tokens, and, minimum_should_match } => {
            let required = required_tokens(tokens.len(), *and, *minimum_should_match);
            fields.iter().any(|f| match_field(doc.values(f), query, tokens, required))
        }
        Query::Bool { must, filter, should, must_not, minimum_should_match } => {
            if !must.iter().chain(filter).all(|q| matches(q, doc)) {
                return false;
            }
            if must_not.iter().any(|q| matches(q, doc)) {
                return false;
            }
            let required = match minimum_should_match {
                Some(m) => m.resolve(should.len()),
                None if must.is_empty() && filter.is_empty() && !should.is_empty() => 1,
                None => 0,
            };
            required == 0
                || should.iter().filter(|q| matches(q, doc)).take(required).count() >= required
        }
    }
}

fn required_tokens(n: usize, and: bool, msm: Option<crate::request::MinimumShouldMatch>) -> usize {
    if and { n } else { msm.map_or(1, |m| m.resolve(n)).max(1) }
}

/// `match` over the values of one field: enough distinct query tokens occur in its text.
fn match_field(values: &[Scalar<'_>], query: &str, tokens: &[String], required: usize) -> bool {
    if tokens.is_empty() {
        return false;
    }
    let mut found = vec![false; tokens.len()];
    let mut count = 0;
    for v in values {
        match v {
            Scalar::Str(s) => {
                text::for_each_token(s, |t| {
                    for (i, q) in tokens.iter().enumerate() {
                        if !found[i] && q == t {
                            found[i] = true;
                            count += 1;
                        }
                    }
                    count < required
                });
            }
            // A match on a numeric field is a numeric term query on the whole text.
            Scalar::Int(_) | Scalar::Float(_)
                if query
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .zip(scalar_f64(v))
                    .is_some_and(|(a, b)| a == b) =>
            {
                return true;
            }
            Scalar::Bool(b) if query.trim() == if *b { "true" } else { "false" } => return true,
            _ => {}
        }
        if count >= required {
            return true;
        }
    }
    count >= required
}

fn contains_phrase(s: &str, phrase: &[String]) -> bool {
    let words = text::analyze(s);
    words.windows(phrase.len()).any(|w| w == phrase)
}

fn in_range(
    v: &Scalar<'_>,
    kind: &RangeKind,
    gt: &Option<Bound>,
    gte: &Option<Bound>,
    lt: &Option<Bound>,
    lte: &Option<Bound>,
) -> bool {
    match kind {
        RangeKind::Keyword => {
            let Scalar::Str(s) = v else { return false };
            let s: &str = s;
            let ok = |b: &Option<Bound>, f: fn(&str, &str) -> bool| match b {
                Some(Bound::Str(b)) => f(s, b),
                Some(Bound::Num(n)) => s.parse::<f64>().is_ok_and(|x| x.partial_cmp(n).is_some()),
                None => true,
            };
            ok(gt, |a, b| a > b)
                && ok(gte, |a, b| a >= b)
                && ok(lt, |a, b| a < b)
                && ok(lte, |a, b| a <= b)
        }
        RangeKind::Numeric | RangeKind::Date { .. } => {
            let x = match kind {
                RangeKind::Date { format, time_zone } => {
                    date_millis(v, format, time_zone).map(|ms| ms as f64)
                }
                _ => scalar_f64(v).or_else(|| match v {
                    Scalar::Str(s) => crate::agg::default_date_format()
                        .parse_millis(s, &crate::date::TimeZone::utc())
                        .map(|ms| ms as f64),
                    _ => None,
                }),
            };
            let Some(x) = x else { return false };
            let num = |b: &Option<Bound>| match b {
                Some(Bound::Num(n)) => Some(*n),
                _ => None,
            };
            num(gt).is_none_or(|b| x > b)
                && num(gte).is_none_or(|b| x >= b)
                && num(lt).is_none_or(|b| x < b)
                && num(lte).is_none_or(|b| x <= b)
        }
    }
}

/// A byte-level pre-filter: a record that contains none of its literals (ASCII
/// case-insensitively) cannot match, so it is passed over without being parsed.
///
/// Built only from analysed `match` tokens that are plain ASCII. The same word can hide in JSON
/// bytes in other spellings, so a record is also a candidate when it holds a `\u00XX` escape of
/// an ASCII character, or one of the two non-ASCII characters whose lowercase is ASCII (`K`
/// KELVIN SIGN, `İ`), raw or escaped.
///
/// The search is SIMD where the CPU has it: a packed (Teddy) searcher finds every case variant
/// of each literal's first three bytes, and each hit is verified case-insensitively; elsewhere
/// (WASM) a case-insensitive Aho-Corasick automaton does the same job.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    literals: Vec<Vec<u8>>,
    search: LiteralSearch,
    escape: memchr::memmem::Finder<'static>,
    unicode: Vec<memchr::memmem::Finder<'static>>,
}

#[derive(Debug, Clone)]
enum LiteralSearch {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

/// Every ASCII case variant of `word`.
fn case_variants(word: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new()];
    for &c in word {
        let mut next = Vec::with_capacity(out.len() * 2);
        for p in &out {
            for v in [c.to_ascii_lowercase(), c.to_ascii_uppercase()] {
                let mut q = p.clone();
                q.push(v);
                if !next.contains(&q) {
                    next.push(q);
                }
            }
        }
        out = next;
    }
    out
}

impl Prefilter {
    /// The pre-filter implied by `query`, if one applies.
    pub(crate) fn for_query(query: &Query) -> Option<Prefilter> {
        let mut literals: Vec<Vec<u8>> =
            literals(query)?.into_iter().map(String::into_bytes).collect();
        literals.sort();
        literals.dedup();
        if literals.is_empty() {
            return None;
        }
        let all: Vec<u8> = literals.concat();
        let mut unicode = Vec::new();
        if all.contains(&b'k') {
            unicode.push(memchr::memmem::Finder::new("\u{212A}".as_bytes()).into_owned());
            unicode.push(memchr::memmem::Finder::new(b"\\u212a").into_owned());
            unicode.push(memchr::memmem::Finder::new(b"\\u212A").into_owned());
        }
        if all.contains(&b'i') {
            unicode.push(memchr::memmem::Finder::new("\u{130}".as_bytes()).into_owned());
            unicode.push(memchr::memmem::Finder::new(b"\\u0130").into_owned());
        }
        let prefixes: Vec<Vec<u8>> =
            literals.iter().flat_map(|l| case_variants(&l[..l.len().min(3)])).collect();
        let mut builder = aho_corasick::packed::Config::new().builder();
        for p in &prefixes {
            builder.add(p);
        }
        let search = match (prefixes.len() <= 64).then(|| builder.build()).flatten() {
            Some(packed) => LiteralSearch::Packed(packed),
            None => LiteralSearch::Automaton(
                AhoCorasick::builder().ascii_case_insensitive(true).build(&literals).ok()?,
            ),
        };
        Some(Prefilter {
            literals,
            search,
            escape: memchr::memmem::Finder::new(b"\\u00").into_owned(),
            unicode,
        })
    }

    /// Whether a record with these bytes may match.
    pub(crate) fn may_match(&self, bytes: &[u8]) -> bool {
        self.has_literal(bytes)
            || self.has_escaped_ascii(bytes)
            || self.unicode.iter().any(|f| f.find(bytes).is_some())
    }

    fn has_literal(&self, bytes: &[u8]) -> bool {
        match &self.search {
            LiteralSearch::Automaton(ac) => ac.is_match(bytes),
            LiteralSearch::Packed(packed) => {
                let mut at = 0;
                while let Some(m) = packed.find(&bytes[at..]) {
                    let start = at + m.start();
                    let rest = &bytes[start..];
                    if self
                        .literals
                        .iter()
                        .any(|l| rest.len() >= l.len() && rest[..l.len()].eq_ignore_ascii_case(l))
                    {
                        return true;
                    }
                    at = start + 1;
                }
                false
            }
        }
    }

    /// A `\u00XX` escape of a printable ASCII character (`\u0020`..`\u007f`).
    fn has_escaped_ascii(&self, bytes: &[u8]) -> bool {
        self.escape.find_iter(bytes).any(|i| matches!(bytes.get(i + 4), Some(b'2'..=b'7')))
    }
}

/// Literals of which a matching record contains at least one; None when no such set is known.
fn literals(query: &Query) -> Option<Vec<String>> {
    let safe = |tokens: &[String]| -> Option<Vec<String>> {
        let ok = !tokens.is_empty()
            && tokens.iter().all(|t| {
                t.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                    && t.parse::<f64>().is_err()
            });
        ok.then(|| tokens.to_vec())
    };
    match query {
        // Virtual fields (`@key`) are not in the value bytes.
        Query::Match { field: FieldRef::Path { .. }, tokens, .. }
        | Query::MatchPhrase { field: FieldRef::Path { .. }, tokens, .. } => safe(tokens),
        Query::MultiMatch { fields, tokens, .. }
            if fields.iter().all(|f| matches!(f, FieldRef::Path { .. })) =>
        {
            safe(tokens)
        }
        Query::Bool { must, filter, should, minimum_should_match, .. } => {
            if let Some(l) = must.iter().chain(filter).find_map(literals) {
                return Some(l);
            }
            let should_required = minimum_should_match
                .map_or(must.is_empty() && filter.is_empty(), |m| m.resolve(should.len()) > 0);
            if should_required && !should.is_empty() {
                let mut all = Vec::new();
                for q in should {
                    all.extend(literals(q)?);
                }
                return Some(all);
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use crate::request::parse_request;

    fn prefilter(text: &str) -> Prefilter {
        let req = parse_request(
            &serde_json::json!({"topic": "t", "query": {"match": {"text": text}}}),
            &Limits::default(),
        )
        .expect("valid");
        Prefilter::for_query(&req.query).expect("a match query has a pre-filter")
    }

    #[test]
    fn the_prefilter_keeps_every_spelling_of_the_word_in_json_bytes() {
        let f = prefilter("Federer");
        for candidate in [
            r#"{"text":"FEDERER wins"}"#,
            r#"{"text":"go fEdErEr"}"#,
            r#"{"text":"\u0046ederer"}"#,
            r#"{"text":"fed\u0065rer"}"#,
            r#"{"x":"federer"}"#,
        ] {
            assert!(f.may_match(candidate.as_bytes()), "{candidate} ruled out");
        }
        for other in
            [r#"{"text":"Nadal wins"}"#, r#"{"text":"fede rer"}"#, r#"{"text":"\u00e9t\u00e9"}"#]
        {
            assert!(!f.may_match(other.as_bytes()), "{other} kept");
        }
        let k = prefilter("kelvin");
        assert!(k.may_match("{\"text\":\"\u{212A}elvin\"}".as_bytes()));
        assert!(k.may_match(br#"{"text":"\u212Aelvin"}"#));
        let i = prefilter("istanbul");
        assert!(i.may_match("{\"text\":\"\u{130}STANBUL\"}".as_bytes()));
    }

    #[test]
    fn no_prefilter_for_numbers_virtual_fields_or_optional_clauses() {
        let q = |v: serde_json::Value| {
            parse_request(&serde_json::json!({"topic": "t", "query": v}), &Limits::default())
                .expect("valid")
                .query
        };
        assert!(Prefilter::for_query(&q(serde_json::json!({"match": {"n": "42"}}))).is_none());
        assert!(Prefilter::for_query(&q(serde_json::json!({"match": {"@key": "abc"}}))).is_none());
        assert!(Prefilter::for_query(&q(serde_json::json!({"bool": {"must": [{"match_all": {}}], "should": [{"match": {"t": "a"}}]}}))).is_none());
        assert!(Prefilter::for_query(&q(serde_json::json!({"bool": {"filter": [{"term": {"lang": "en"}}, {"match": {"t": "ace"}}]}}))).is_some());
    }
}
