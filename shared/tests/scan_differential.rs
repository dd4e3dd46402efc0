//! The validating scanner against `serde_json`, on random records: the same acceptance
//! (`scan::validate` accepts exactly the records `serde_json::from_slice::<Value>` reads as an
//! object), and the same values at a path. Records are written compact, the way the Twitter API
//! writes them (every non-ASCII character as `\uXXXX`, surrogate pairs, `\/`, escaped `<` `>`),
//! and then damaged at random.

use std::borrow::Cow;

use kappa_core::scan::{Extracted, PathSet, Scalar, extract, validate};
use proptest::prelude::*;
use serde_json::Value;

const KEYS: &[&str] = &["a", "b", "s", "é", "🎾", "a/b", "<k>"];
const STRINGS: &[&str] = &[
    "",
    "plain",
    "Federer",
    "é",
    "日本語",
    "🎾🔥",
    "<a href=\"http://x/y\">x</a>",
    "tab\there",
    "quote\"back\\slash",
    "\u{1}\u{1f}",
    "\u{2028}",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    let tree = leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    });
    prop::collection::btree_map(prop::sample::select(KEYS), tree, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// A damage: replace, insert or delete one byte, at a position given as a fraction.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Replace(f64, u8),
    Insert(f64, u8),
    Delete(f64),
    Truncate(f64),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop::sample::select(
        &b"\"\\u{}[],:0123456789eE+-.tfnal/ \x01\x1f\x7f\xff\xc3\xa9\xed\xa0dD8"[..],
    );
    prop_oneof![
        3 => Just(Damage::None),
        2 => (0.0..1.0, byte.clone()).prop_map(|(at, b)| Damage::Replace(at, b)),
        2 => (0.0..1.0, byte).prop_map(|(at, b)| Damage::Insert(at, b)),
        1 => (0.0..1.0).prop_map(Damage::Delete),
        1 => (0.0..1.0).prop_map(Damage::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, d: &Damage) -> Vec<u8> {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match *d {
        Damage::None => {}
        Damage::Replace(f, b) if !bytes.is_empty() => {
            let i = at(f, bytes.len());
            bytes[i] = b;
        }
        Damage::Insert(f, b) => {
            let i = at(f, bytes.len() + 1);
            bytes.insert(i, b);
        }
        Damage::Delete(f) if !bytes.is_empty() => {
            let i = at(f, bytes.len());
            bytes.remove(i);
        }
        Damage::Truncate(f) => bytes.truncate(at(f, bytes.len())),
        _ => {}
    }
    bytes
}

/// The values at `path` (keys without dots) by the scanner's semantics, from a parsed value.
fn values_at<'v>(v: &'v Value, path: &[&str], out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| values_at(x, path, out)),
        Value::Object(m) => match path.split_first() {
            None => out.push(v),
            Some((k, rest)) => {
                if let Some(x) = m.get(*k) {
                    values_at(x, rest, out);
                }
            }
        },
        _ if path.is_empty() => out.push(v),
        _ => {}
    }
}

fn same(scalar: &Scalar<'_>, value: &Value) -> bool {
    match (scalar, value) {
        (Scalar::Null, Value::Null) => true,
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Int(a), Value::Number(n)) => n.as_i64() == Some(*a),
        (Scalar::Float(a), Value::Number(n)) => {
            n.as_i64().is_none() && n.as_f64().is_some_and(|b| b.to_bits() == a.to_bits())
        }
        (Scalar::Str(a), Value::String(b)) => a == &Cow::Borrowed(b.as_str()),
        (Scalar::Object, Value::Object(_)) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_scanner_accepts_and_extracts_exactly_what_serde_json_reads(
        doc in doc(), api in any::<bool>(), damage in damage(), path in prop::sample::select(&["a", "a.b", "s", "é.🎾", "a/b", "<k>.a"][..])
    ) {
        let compact = serde_json::to_vec(&doc).expect("serialises");
        let bytes = if api {
            let mut out = Vec::new();
            kappa_tweetgen::write_api_escaped(&compact, &mut out);
            out
        } else {
            compact
        };
        let bytes = apply(bytes, &damage);
        let reference = serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object);
        prop_assert_eq!(
            validate(&bytes).is_ok(),
            reference.is_some(),
            "acceptance differs on {}",
            String::from_utf8_lossy(&bytes)
        );
        let paths = PathSet::new(&[path]);
        let mut out = Extracted::with_slots(1);
        prop_assert_eq!(extract(&bytes, &paths, &mut out).is_ok(), reference.is_some());
        if let Some(reference) = reference {
            let segments: Vec<&str> = path.split('.').collect();
            let mut want = Vec::new();
            values_at(&reference, &segments, &mut want);
            let got = out.values(0);
            prop_assert_eq!(got.len(), want.len(), "values at {} of {}", path, String::from_utf8_lossy(&bytes));
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(same(g, w), "{:?} vs {} at {} of {}", g, w, path, String::from_utf8_lossy(&bytes));
            }
        }
    }
}
