//! Typed values of documents and queries, and the comparisons between them.
//!
//! Documents have no mapping, so types come from the JSON itself: a query value is compared with
//! a document value of a compatible type (strings with strings, numbers with numbers, where a
//! string that spells a number counts as that number, as an Elasticsearch numeric field would
//! coerce it). Values of any other type simply do not match.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scan::Scalar;

/// A scalar given in a query (`term`, `terms`, `missing`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TermValue {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl TermValue {
    /// From a query JSON scalar; `None` for null, arrays and objects.
    pub fn from_json(v: &Value) -> Option<TermValue> {
        match v {
            Value::String(s) => Some(TermValue::Str(s.clone())),
            Value::Number(n) => n.as_f64().map(TermValue::Num),
            Value::Bool(b) => Some(TermValue::Bool(*b)),
            _ => None,
        }
    }

    /// Canonical JSON (numbers normalised: integral floats become integers).
    pub fn to_json(&self) -> Value {
        match self {
            TermValue::Str(s) => Value::String(s.clone()),
            TermValue::Num(n) => number_json(*n),
            TermValue::Bool(b) => Value::Bool(*b),
        }
    }

    /// Whether document value `doc` equals this query value (exact; `case_insensitive` for strings).
    pub fn matches(&self, doc: &Scalar<'_>, case_insensitive: bool) -> bool {
        match (self, doc) {
            (TermValue::Str(q), Scalar::Str(s)) => {
                if case_insensitive {
                    q.to_lowercase() == s.to_lowercase()
                } else {
                    q == s.as_ref()
                }
            }
            (TermValue::Str(q), Scalar::Int(_) | Scalar::Float(_)) => {
                q.trim().parse::<f64>().ok().zip(scalar_f64(doc)).is_some_and(|(a, b)| a == b)
            }
            (TermValue::Str(q), Scalar::Bool(b)) => q == if *b { "true" } else { "false" },
            (TermValue::Num(q), Scalar::Int(_) | Scalar::Float(_)) => scalar_f64(doc) == Some(*q),
            (TermValue::Num(q), Scalar::Str(s)) => s.trim().parse::<f64>().ok() == Some(*q),
            (TermValue::Bool(q), Scalar::Bool(b)) => q == b,
            (TermValue::Bool(q), Scalar::Str(s)) => s == if *q { "true" } else { "false" },
            _ => false,
        }
    }
}

/// The number a document value stands for: numbers, and strings that spell a number.
pub fn scalar_f64(v: &Scalar<'_>) -> Option<f64> {
    match v {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) if f.is_finite() => Some(*f),
        Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// The number of a numeric document value only (metrics take numbers, not strings).
pub fn numeric(v: &Scalar<'_>) -> Option<f64> {
    match v {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// JSON for a float that renders integral values without a fraction (`5` not `5.0`), as
/// Elasticsearch renders long values; non-finite values become null.
pub fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// JSON for a double that Elasticsearch renders as a double (`10.0`, not `10`).
pub fn double_json(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// Java's `Double.toString`, which Elasticsearch uses for range keys (`100.0`, `1.0E7`, `1.0E-4`).
pub fn java_double(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let abs = n.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{n}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        // Shortest round-trip digits in scientific form: d.dddE±x.
        let s = format!("{n:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa =
            if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
        format!("{mantissa}E{exp}")
    }
}

/// A value that orders hits (`sort`). Across JSON types the order is fixed, whatever the
/// direction: numbers (and dates) before strings before booleans; the direction applies within
/// a kind (see [`SortValue::kind_rank`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortValue {
    /// A number.
    Num(f64),
    /// A string (exact value).
    Str(String),
    /// A boolean (rendered 1/0 like Elasticsearch's boolean sort values).
    Bool(bool),
}

impl SortValue {
    /// Rank of the value's kind: numbers, then strings, then booleans.
    pub fn kind_rank(&self) -> u8 {
        match self {
            SortValue::Num(_) => 0,
            SortValue::Str(_) => 1,
            SortValue::Bool(_) => 2,
        }
    }

    /// Order within a kind (ascending); across kinds, by [`SortValue::kind_rank`].
    pub fn cmp_total(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            (SortValue::Num(a), SortValue::Num(b)) => a.total_cmp(b),
            (SortValue::Str(a), SortValue::Str(b)) => a.cmp(b),
            (SortValue::Bool(a), SortValue::Bool(b)) => a.cmp(b),
            _ => self.kind_rank().cmp(&other.kind_rank()),
        }
    }

    /// From a document value: numbers, strings and booleans sort, others don't.
    pub fn from_scalar(v: &Scalar<'_>) -> Option<SortValue> {
        match v {
            Scalar::Int(i) => Some(SortValue::Num(*i as f64)),
            Scalar::Float(f) if f.is_finite() => Some(SortValue::Num(*f)),
            Scalar::Str(s) => Some(SortValue::Str(s.to_string())),
            Scalar::Bool(b) => Some(SortValue::Bool(*b)),
            _ => None,
        }
    }

    /// Rendered in a hit's `sort` array.
    pub fn to_json(&self) -> Value {
        match self {
            SortValue::Num(n) => number_json(*n),
            SortValue::Str(s) => Value::String(s.clone()),
            SortValue::Bool(b) => Value::from(u8::from(*b)),
        }
    }
}

/// A `terms` bucket key; keeps the JSON type of the document value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TermKey {
    /// Boolean key: rendered as 1/0 with `key_as_string` "true"/"false".
    Bool(bool),
    /// Integer key.
    Int(i64),
    /// Floating-point key (bits of a finite, non-integral f64).
    Float(u64),
    /// String key.
    Str(String),
}

/// A [`TermKey`] borrowed from a document value: a `terms` fold looks its bucket up with
/// this, and allocates an owned key only for a bucket it creates (once per distinct key,
/// where the fold runs once per record and query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TermKeyRef<'a> {
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(&'a str),
}

impl<'a> TermKeyRef<'a> {
    /// The key of a document value; None for null and objects.
    pub(crate) fn from_scalar(v: &'a Scalar<'_>) -> Option<TermKeyRef<'a>> {
        match v {
            Scalar::Bool(b) => Some(TermKeyRef::Bool(*b)),
            Scalar::Int(i) => Some(TermKeyRef::Int(*i)),
            Scalar::Float(f) => TermKeyRef::from_f64(*f),
            Scalar::Str(s) => Some(TermKeyRef::Str(s)),
            _ => None,
        }
    }

    /// Integral floats are the same key as the integer.
    pub(crate) fn from_f64(f: f64) -> Option<TermKeyRef<'static>> {
        if !f.is_finite() {
            None
        } else if f.fract() == 0.0 && f.abs() < 9.2e18 {
            Some(TermKeyRef::Int(f as i64))
        } else {
            Some(TermKeyRef::Float((f + 0.0).to_bits()))
        }
    }

    /// From a query value (`missing`, `include`, `exclude`).
    pub(crate) fn from_term(v: &'a TermValue) -> Option<TermKeyRef<'a>> {
        match v {
            TermValue::Str(s) => Some(TermKeyRef::Str(s)),
            TermValue::Num(n) => TermKeyRef::from_f64(*n),
            TermValue::Bool(b) => Some(TermKeyRef::Bool(*b)),
        }
    }

    /// The text used by `include`/`exclude` regexes and `key_as_string`.
    pub(crate) fn as_text(self) -> std::borrow::Cow<'a, str> {
        match self {
            TermKeyRef::Bool(b) => b.to_string().into(),
            TermKeyRef::Int(i) => i.to_string().into(),
            TermKeyRef::Float(bits) => f64::from_bits(bits).to_string().into(),
            TermKeyRef::Str(s) => s.into(),
        }
    }

    pub(crate) fn to_owned_key(self) -> TermKey {
        match self {
            TermKeyRef::Bool(b) => TermKey::Bool(b),
            TermKeyRef::Int(i) => TermKey::Int(i),
            TermKeyRef::Float(bits) => TermKey::Float(bits),
            TermKeyRef::Str(s) => TermKey::Str(s.to_string()),
        }
    }
}

// One hash for a key and its borrowed form, so either finds the bucket.
impl std::hash::Hash for TermKeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            TermKeyRef::Bool(b) => (0u8, b).hash(state),
            TermKeyRef::Int(i) => (1u8, i).hash(state),
            TermKeyRef::Float(bits) => (2u8, bits).hash(state),
            TermKeyRef::Str(s) => (3u8, s).hash(state),
        }
    }
}

impl std::hash::Hash for TermKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_key_ref().hash(state);
    }
}

impl hashbrown::Equivalent<TermKey> for TermKeyRef<'_> {
    fn equivalent(&self, key: &TermKey) -> bool {
        *self == key.as_key_ref()
    }
}

impl TermKey {
    /// This key borrowed.
    pub(crate) fn as_key_ref(&self) -> TermKeyRef<'_> {
        match self {
            TermKey::Bool(b) => TermKeyRef::Bool(*b),
            TermKey::Int(i) => TermKeyRef::Int(*i),
            TermKey::Float(bits) => TermKeyRef::Float(*bits),
            TermKey::Str(s) => TermKeyRef::Str(s),
        }
    }

    /// The key of a document value; None for null and objects.
    pub fn from_scalar(v: &Scalar<'_>) -> Option<TermKey> {
        TermKeyRef::from_scalar(v).map(TermKeyRef::to_owned_key)
    }

    /// Integral floats are the same key as the integer.
    pub fn from_f64(f: f64) -> Option<TermKey> {
        TermKeyRef::from_f64(f).map(TermKeyRef::to_owned_key)
    }

    /// From a query value (`missing`, `include`).
    pub fn from_term(v: &TermValue) -> Option<TermKey> {
        TermKeyRef::from_term(v).map(TermKeyRef::to_owned_key)
    }

    /// Order of `_key`: numbers numerically, strings by bytes (as Elasticsearch's BytesRef).
    pub fn cmp_key(&self, other: &TermKey) -> Ordering {
        match (self.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            _ => self.cmp(other),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            TermKey::Bool(b) => Some(f64::from(u8::from(*b))),
            TermKey::Int(i) => Some(*i as f64),
            TermKey::Float(bits) => Some(f64::from_bits(*bits)),
            TermKey::Str(_) => None,
        }
    }

    /// The text used by `include`/`exclude` regexes and `key_as_string`.
    pub fn as_text(&self) -> String {
        self.as_key_ref().as_text().into_owned()
    }

    /// Rendered bucket `key` (and `key_as_string` for booleans).
    pub fn to_json(&self) -> (Value, Option<String>) {
        match self {
            TermKey::Bool(b) => (Value::from(u8::from(*b)), Some(b.to_string())),
            TermKey::Int(i) => (Value::from(*i), None),
            TermKey::Float(bits) => (double_json(f64::from_bits(*bits)), None),
            TermKey::Str(s) => (Value::String(s.clone()), None),
        }
    }

    /// Estimated heap bytes, for the state's memory budget.
    pub fn heap_bytes(&self) -> usize {
        match self {
            TermKey::Str(s) => s.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket is found by the borrowed form of its key, whatever the key's type, and not
    /// by another type's key with the same bits or text.
    #[test]
    fn a_borrowed_term_key_finds_its_bucket() {
        let scalars = [
            Scalar::Bool(true),
            Scalar::Int(1),
            Scalar::Float(1.0),
            Scalar::Float(1.5),
            Scalar::Str(std::borrow::Cow::Borrowed("1")),
            Scalar::Str(std::borrow::Cow::Borrowed("true")),
        ];
        let mut map: hashbrown::HashMap<TermKey, usize, std::hash::RandomState> =
            Default::default();
        for (i, v) in scalars.iter().enumerate() {
            let owned = TermKey::from_scalar(v).expect("a key");
            let borrowed = TermKeyRef::from_scalar(v).expect("a key");
            assert_eq!(borrowed.to_owned_key(), owned);
            map.entry(owned).or_insert(i);
        }
        // `1` and `1.0` are one key, as Elasticsearch's terms of a numeric field.
        assert_eq!(map.len(), scalars.len() - 1);
        for v in &scalars {
            let owned = TermKey::from_scalar(v).expect("a key");
            let key = TermKeyRef::from_scalar(v).expect("a key");
            assert_eq!(map.get(&key), map.get(&owned), "{v:?}");
        }
        assert_eq!(map.get(&TermKeyRef::Str("2")), None);
        // Query values (`missing`, `include`) borrow the same keys, typed as the documents'.
        let terms = [TermValue::Num(1.0), TermValue::Str("1".into()), TermValue::Bool(true)];
        for term in &terms {
            let key = TermKeyRef::from_term(term).expect("a key");
            assert!(map.get(&key).is_some(), "{term:?}");
        }
        assert_eq!(TermKeyRef::from_term(&TermValue::Num(1.0)), Some(TermKeyRef::Int(1)));
        assert_eq!(TermKeyRef::from_f64(f64::NAN), None);
    }

    #[test]
    fn java_double_matches_elasticsearch_range_keys() {
        assert_eq!(java_double(100.0), "100.0");
        assert_eq!(java_double(-2.5), "-2.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.25e-4), "1.25E-4");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(9_999_999.0), "9999999.0");
    }

    #[test]
    fn numeric_strings_match_numbers_and_types_never_cross_otherwise() {
        let five = TermValue::Num(5.0);
        assert!(five.matches(&Scalar::Int(5), false));
        assert!(five.matches(&Scalar::Str("5".into()), false));
        assert!(!five.matches(&Scalar::Bool(true), false));
        assert!(TermValue::Str("5".into()).matches(&Scalar::Float(5.0), false));
        assert!(
            !TermValue::Str("Wimbledon".into()).matches(&Scalar::Str("wimbledon".into()), false)
        );
        assert!(TermValue::Str("Wimbledon".into()).matches(&Scalar::Str("wimbledon".into()), true));
        assert!(!TermValue::Str("x".into()).matches(&Scalar::Null, false));
    }

    #[test]
    fn integral_float_keys_equal_integer_keys() {
        assert_eq!(TermKey::from_scalar(&Scalar::Float(3.0)), Some(TermKey::Int(3)));
        assert_eq!(TermKey::from_scalar(&Scalar::Null), None);
    }
}
