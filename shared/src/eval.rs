//! Evaluation of queries against one record, and the byte-level pre-filter.
//!
//! A [`Doc`] is a record with the values of the paths the request reads, extracted lazily by
//! [`crate::scan`]; the document is never materialised as a tree. Missing fields and values of
//! the wrong type simply don't match.

use std::borrow::Cow;

use crate::date::DateFormat;
use crate::request::{Bound, FieldRef, MinimumShouldMatch, Query, RangeKind};
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
    /// The plan's slot `i` is `ext`'s slot `map[i]` (a scan shared by several plans), or
    /// `ext`'s slot `i` when `None`.
    map: Option<&'a [u32]>,
    virtuals: [Scalar<'r>; 4],
}

impl<'a, 'r> Doc<'a, 'r> {
    pub(crate) fn new(record: &'a Record<'r>, ext: &'a Extracted<'r>) -> Self {
        Doc::mapped(record, ext, None)
    }

    /// A document whose plan slot `i` is `ext`'s slot `map[i]`.
    pub(crate) fn mapped(
        record: &'a Record<'r>,
        ext: &'a Extracted<'r>,
        map: Option<&'a [u32]>,
    ) -> Self {
        let key = match record.key {
            Some(k) => Scalar::Str(String::from_utf8_lossy(k)),
            None => Scalar::Null,
        };
        Doc {
            record,
            ext,
            map,
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
                let own = self.slot(*slot);
                match fallback {
                    Some(base) if own.is_empty() => self.slot(*base),
                    _ => own,
                }
            }
        }
    }

    fn slot(&self, slot: usize) -> &[Scalar<'r>] {
        match self.map {
            None => self.ext.values(slot),
            Some(map) => map.get(slot).map_or(&[], |&s| self.ext.values(s as usize)),
        }
    }

    pub(crate) fn key_text(&self) -> Option<Cow<'r, str>> {
        match &self.virtuals[3] {
            Scalar::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// A document value as epoch ms, read as Elasticsearch's default date mapping reads it:
/// numbers are epoch milliseconds, strings `strict_date_optional_time` (UTC unless they carry
/// an offset). A request's `format` parses the request's own bounds and renders keys; because
/// a topic has no mapping, it is also tried on a string the defaults cannot read (Twitter's
/// `created_at` with its format given), never instead of them.
pub(crate) fn date_millis(v: &Scalar<'_>, request_format: Option<&DateFormat>) -> Option<i64> {
    let defaults = crate::date::DateFormat::default_ref();
    let utc = crate::date::TimeZone::utc();
    match v {
        Scalar::Int(i) => defaults.number_to_millis(*i as f64),
        Scalar::Float(f) => defaults.number_to_millis(*f),
        Scalar::Str(s) => defaults
            .parse_millis(s, &utc)
            .or_else(|| request_format.and_then(|f| f.parse_millis(s, &utc))),
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
        Query::Wildcard { field, matcher, .. } => doc.values(field).iter().any(|v| match v {
            Scalar::Str(s) => matcher.is_match(s),
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
            let required = MinimumShouldMatch::required_should(
                *minimum_should_match,
                should.len(),
                must.is_empty() && filter.is_empty(),
            );
            required == 0
                || should.iter().filter(|q| matches(q, doc)).take(required).count() >= required
        }
    }
}

/// Distinct query tokens a `match` needs. One token is a term query, which
/// minimum_should_match does not touch; more than there are tokens matches nothing.
fn required_tokens(n: usize, and: bool, msm: Option<MinimumShouldMatch>) -> usize {
    if and || n <= 1 { n } else { msm.map_or(1, |m| m.resolve(n)).max(1) }
}

/// `match` over the values of one field: enough distinct query tokens occur in its text.
fn match_field(values: &[Scalar<'_>], query: &str, tokens: &[String], required: usize) -> bool {
    if tokens.is_empty() {
        return false;
    }
    let mut found = Vec::new();
    let mut count = 0;
    for v in values {
        match v {
            // Segmenting into words costs far more than looking at the bytes: only texts that
            // can hold a token still missing are segmented.
            Scalar::Str(s)
                if tokens.iter().enumerate().any(|(i, q)| {
                    !found.get(i).copied().unwrap_or(false) && text::may_hold_token(s, q)
                }) =>
            {
                if found.is_empty() {
                    found = vec![false; tokens.len()];
                }
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
    if !phrase.iter().all(|t| text::may_hold_token(s, t)) {
        return false;
    }
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
    // Without bounds a range holds every value, of any type (Elasticsearch: every term).
    if gt.is_none() && gte.is_none() && lt.is_none() && lte.is_none() {
        return !matches!(v, Scalar::Null | Scalar::Object);
    }
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
                RangeKind::Date { format, .. } => date_millis(v, Some(format)).map(|ms| ms as f64),
                _ => scalar_f64(v).or_else(|| date_millis(v, None).map(|ms| ms as f64)),
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
