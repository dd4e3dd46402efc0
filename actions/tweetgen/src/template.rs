//! Base tweets turned into byte templates: the tweet serialized once, with holes (slots) where
//! each record writes its own values. Building a record is then a few copies and small writes.

use crate::vocab::contains_federer;
use serde_json::{Map, Value};

/// A value written per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Id,
    IdStr,
    CreatedAt,
    Text,
    DisplayRange,
    Hashtags,
    Mentions,
    UserId,
    UserIdStr,
    UserScreenName,
    UserName,
    RetweetCount,
    FavoriteCount,
    Lang,
    IsoLang,
    Place,
    Urls,
}

const ALL_SLOTS: [Slot; 17] = [
    Slot::Id,
    Slot::IdStr,
    Slot::CreatedAt,
    Slot::Text,
    Slot::DisplayRange,
    Slot::Hashtags,
    Slot::Mentions,
    Slot::UserId,
    Slot::UserIdStr,
    Slot::UserScreenName,
    Slot::UserName,
    Slot::RetweetCount,
    Slot::FavoriteCount,
    Slot::Lang,
    Slot::IsoLang,
    Slot::Place,
    Slot::Urls,
];

/// A base tweet as literal byte segments around slots: `segs[0] slots[0] segs[1] ... segs[n]`.
pub(crate) struct Template {
    pub(crate) segs: Vec<Box<[u8]>>,
    pub(crate) slots: Vec<Slot>,
    /// Bytes of the literal segments.
    pub(crate) fixed_len: usize,
    /// The first link of the base tweet: its `url` (what the text shows) and the rest of its
    /// `entities.urls` entry as JSON members (`,"expanded_url":..,"display_url":..`).
    pub(crate) link: Option<(String, String)>,
    /// Whether the tweet nests another (`retweeted_status` or `quoted_status`).
    pub(crate) nested: bool,
    /// For a retweet, the retweeted user: screen name, name, id.
    pub(crate) retweeted: Option<(String, String, u64)>,
}

/// The author of `retweeted_status`, if any.
fn retweeted_user(o: &Map<String, Value>) -> Option<(String, String, u64)> {
    let u = o.get("retweeted_status")?.get("user")?;
    let sn = u.get("screen_name")?.as_str()?.to_string();
    let name = u.get("name").and_then(Value::as_str).unwrap_or(&sn).to_string();
    let id = u.get("id").and_then(Value::as_u64).unwrap_or(0);
    Some((sn, name, id))
}

/// The first entry of `entities.urls`, if it has a `url`.
fn first_link(o: &Map<String, Value>) -> Option<(String, String)> {
    let e = o.get("entities")?.get("urls")?.as_array()?.first()?.as_object()?;
    let url = e.get("url")?.as_str()?.to_string();
    let mut rest = String::new();
    for k in ["expanded_url", "display_url"] {
        if let Some(v) = e.get(k) {
            rest.push_str(&format!(",\"{k}\":{}", serde_json::to_string(v).ok()?));
        }
    }
    Some((url, rest))
}

fn sentinel(slot: Slot) -> String {
    format!("\u{1}KAPPA_SLOT_{slot:?}\u{1}")
}

/// Replaces "federer" (any case) in every string and key.
pub(crate) fn scrub(v: &mut Value) {
    fn fix(s: &str) -> Option<String> {
        if !contains_federer(s.as_bytes()) {
            return None;
        }
        // "federer" is ASCII, so byte positions found case-insensitively are char boundaries.
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < b.len() {
            if i + 7 <= b.len() && b[i..i + 7].eq_ignore_ascii_case(b"federer") {
                out.push_str("Laver");
                i += 7;
            } else {
                let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
        Some(out)
    }
    match v {
        Value::String(s) => {
            if let Some(n) = fix(s) {
                *s = n;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => {
            if o.keys().any(|k| contains_federer(k.as_bytes())) {
                let old = std::mem::take(o);
                for (k, mut x) in old {
                    scrub(&mut x);
                    o.insert(fix(&k).unwrap_or(k), x);
                }
            } else {
                o.values_mut().for_each(scrub);
            }
        }
        _ => {}
    }
}

fn put(o: &mut Map<String, Value>, key: &str, slot: Slot, insert: bool) {
    if insert || o.contains_key(key) {
        o.insert(key.to_string(), Value::String(sentinel(slot)));
    }
}

/// Builds the template of a (scrubbed) base tweet; `None` if it is not an object or still
/// mentions Federer.
pub(crate) fn build(mut v: Value) -> Option<Template> {
    let o = v.as_object_mut()?;
    let link = first_link(o);
    let nested = o.contains_key("retweeted_status") || o.contains_key("quoted_status");
    let retweeted = retweeted_user(o);
    put(o, "id", Slot::Id, true);
    put(o, "id_str", Slot::IdStr, true);
    put(o, "created_at", Slot::CreatedAt, true);
    let text_key = if o.contains_key("full_text") { "full_text" } else { "text" };
    put(o, text_key, Slot::Text, true);
    put(o, "display_text_range", Slot::DisplayRange, false);
    if !o.get("entities").is_some_and(Value::is_object) {
        o.insert("entities".into(), Value::Object(Map::new()));
    }
    if let Some(e) = o.get_mut("entities").and_then(Value::as_object_mut) {
        put(e, "hashtags", Slot::Hashtags, true);
        put(e, "user_mentions", Slot::Mentions, true);
        put(e, "urls", Slot::Urls, true);
    }
    if !o.get("user").is_some_and(Value::is_object) {
        o.insert("user".into(), Value::Object(Map::new()));
    }
    if let Some(u) = o.get_mut("user").and_then(Value::as_object_mut) {
        put(u, "id", Slot::UserId, true);
        put(u, "id_str", Slot::UserIdStr, true);
        put(u, "name", Slot::UserName, true);
        put(u, "screen_name", Slot::UserScreenName, true);
    }
    put(o, "retweet_count", Slot::RetweetCount, true);
    put(o, "favorite_count", Slot::FavoriteCount, true);
    put(o, "lang", Slot::Lang, true);
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        put(m, "iso_language_code", Slot::IsoLang, false);
    }
    put(o, "place", Slot::Place, false);

    let bytes = serde_json::to_vec(&v).ok()?;
    // One pass over the bytes for the serialized sentinels: `"\u0001KAPPA_SLOT_<name>\u0001"`.
    const OPEN: &[u8] = b"\"\\u0001KAPPA_SLOT_";
    const CLOSE: &[u8] = b"\\u0001\"";
    let mut found: Vec<(usize, usize, Slot)> = Vec::new();
    let mut p = 0;
    while let Some(q) = bytes[p..].iter().position(|&c| c == b'"') {
        let s = p + q;
        p = s + 1;
        if !bytes[s..].starts_with(OPEN) {
            continue;
        }
        let name_start = s + OPEN.len();
        let Some(len) = bytes[name_start..].iter().position(|&c| c == b'\\') else { break };
        let name = &bytes[name_start..name_start + len];
        let slot = ALL_SLOTS.iter().find(|sl| format!("{sl:?}").as_bytes() == name)?;
        let end = name_start + len + CLOSE.len();
        if !bytes[name_start + len..].starts_with(CLOSE) {
            return None;
        }
        found.push((s, end, *slot));
        p = end;
    }
    found.sort_unstable_by_key(|f| f.0);
    let mut segs = Vec::with_capacity(found.len() + 1);
    let mut slots = Vec::with_capacity(found.len());
    let mut at = 0;
    for (s, e, slot) in found {
        segs.push(bytes[at..s].to_vec().into_boxed_slice());
        slots.push(slot);
        at = e;
    }
    segs.push(bytes[at..].to_vec().into_boxed_slice());
    let fixed_len = segs.iter().map(|s| s.len()).sum();
    if segs.iter().any(|s| contains_federer(s)) {
        return None;
    }
    Some(Template { segs, slots, fixed_len, link, nested, retweeted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_case() {
        let mut v: Value = serde_json::json!({"a": "go FEDERER go", "FedererKey": ["#federer", 1]});
        scrub(&mut v);
        let s = serde_json::to_string(&v).unwrap();
        assert!(!contains_federer(s.as_bytes()), "{s}");
    }

    #[test]
    fn template_has_slots() {
        let v = serde_json::json!({"id": 1, "id_str": "1", "created_at": "x", "text": "hi",
            "entities": {"hashtags": []}, "user": {"id": 2, "screen_name": "a"}, "lang": "en"});
        let t = build(v).unwrap();
        assert_eq!(t.segs.len(), t.slots.len() + 1);
        assert!(t.slots.contains(&Slot::Text));
        assert!(t.slots.contains(&Slot::Mentions));
        assert!(!t.slots.contains(&Slot::Place));
    }
}
