//! The byte-level pre-filter: rule out records that cannot match before parsing them.
//!
//! A `match` query on a word can only match a record whose text holds the word; the pre-filter
//! looks for the word in the record's raw JSON bytes, where it can hide in other spellings:
//! - in any ASCII case (the standard analyzer lowercases);
//! - with any of its characters written as a JSON escape: `\u0066ederer` is "federer". Only
//!   escapes that can decode to a character of a searched word matter: the Twitter API writes
//!   `<` as `\u003c` and every non-ASCII character as `\uXXXX`, so nearly every record holds
//!   escapes, but `\u003c` or `\ud83c` can never be a letter of "federer";
//! - as one of the two non-ASCII characters whose lowercase is ASCII (`K` KELVIN SIGN → k,
//!   `İ` → i under Java's simple case mapping), raw or escaped.
//!
//! So a record is a candidate if it contains a literal (ASCII case-insensitively), or an escape
//! `\u00XX` of a byte of a literal (in either case, hex digits in either case), or a spelling of
//! K/İ when a literal has `k`/`i`. The law (property-tested in `tests/props.rs`): a record the
//! pre-filter rules out never matches the full evaluation.
//!
//! The search is two passes over the bytes. Literals: a packed SIMD (Teddy) searcher looks for
//! every case variant of each literal's first three bytes, and each hit is verified
//! case-insensitively; where the CPU has no Teddy (WASM), each of up to 8 literals is found by
//! two of its rarest bytes compared case-folded 32 positions at a time (a loop the compiler
//! vectorises: simd128), then verified; more literals go through an ASCII-case-insensitive
//! Aho-Corasick automaton. All three agree on every input (property-tested below). Escapes: one
//! `memmem` pass for `\u00`, each hit's two hex digits looked up. (One combined pass was measured
//! slower: every `\u00` escape of the API's records became a candidate to verify.)

use aho_corasick::AhoCorasick;

use crate::request::{FieldRef, Query};
use crate::sort;

/// An ASCII-case-insensitive automaton over `literals`.
fn automaton_of<P: AsRef<[u8]>>(literals: &[P]) -> Option<AhoCorasick> {
    AhoCorasick::builder().ascii_case_insensitive(true).build(literals).ok()
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    /// Lowercase ASCII literals; a matching record contains at least one (in some spelling).
    literals: Vec<Vec<u8>>,
    search: LiteralSearch,
    /// Finds `\u00`, the start of every escape of an ASCII character.
    escape: memchr::memmem::Finder<'static>,
    /// The ASCII bytes (either case) of the literals: a `\u00XX` escape of one is a candidate.
    escaped: [bool; 128],
    /// The other spellings of literal bytes: K/İ raw and escaped, `\/`.
    others: Vec<memchr::memmem::Finder<'static>>,
}

/// The pre-filters of many plans in one pass over a record's bytes: which plans may match it.
///
/// The law (property-tested below): plan `i` is a candidate exactly when its own pre-filter's
/// [`Prefilter::may_match`] holds (a plan without one is always a candidate). One
/// ASCII-case-insensitive automaton finds every plan's literals at once, one `\u00` pass finds
/// the escaped ASCII bytes, and the few other spellings are looked for once each; each plan
/// then checks its own literals, bytes and spellings against what was found.
#[derive(Debug, Clone)]
pub(crate) struct PrefilterSet {
    /// Per plan: `None` (always a candidate) or its literals, escaped bytes and spellings, as
    /// indexes into the union lists and a bit set.
    members: Vec<Option<MemberFilter>>,
    /// Every member's literals, deduplicated.
    literals: Option<AhoCorasick>,
    literal_count: usize,
    escape: memchr::memmem::Finder<'static>,
    /// Whether any member cares about escaped bytes (always, when any has literals).
    any_escaped: u128,
    spellings: Vec<memchr::memmem::Finder<'static>>,
}

#[derive(Debug, Clone)]
struct MemberFilter {
    literals: Vec<usize>,
    escaped: u128,
    spellings: Vec<usize>,
}

/// What one pass found in a record.
#[derive(Debug, Default)]
pub(crate) struct Found {
    literals: Vec<bool>,
    escaped: u128,
    spellings: Vec<bool>,
}

impl PrefilterSet {
    /// The set of `filters`, member `i` being `filters[i]`.
    pub(crate) fn new(filters: &[Option<&Prefilter>]) -> PrefilterSet {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut spellings: Vec<Vec<u8>> = Vec::new();
        let index_of =
            |list: &mut Vec<Vec<u8>>, item: &[u8]| match list.iter().position(|l| l == item) {
                Some(i) => i,
                None => {
                    list.push(item.to_vec());
                    list.len() - 1
                }
            };
        let mut any_escaped = 0u128;
        let members: Vec<Option<MemberFilter>> = filters
            .iter()
            .map(|f| {
                let f = (*f)?;
                let escaped = bits_of(&f.escaped);
                any_escaped |= escaped;
                Some(MemberFilter {
                    literals: f.literals.iter().map(|l| index_of(&mut literals, l)).collect(),
                    escaped,
                    spellings: other_spellings(&f.escaped)
                        .iter()
                        .map(|s| index_of(&mut spellings, s))
                        .collect(),
                })
            })
            .collect();
        let automaton = (!literals.is_empty()).then(|| automaton_of(&literals)).flatten();
        PrefilterSet {
            members,
            literals: automaton,
            literal_count: literals.len(),
            escape: memchr::memmem::Finder::new(b"\\u00").into_owned(),
            any_escaped,
            spellings: spellings
                .iter()
                .map(|s| memchr::memmem::Finder::new(s).into_owned())
                .collect(),
        }
    }

    /// One pass over `bytes`: the literals, escaped bytes and spellings present.
    pub(crate) fn find(&self, bytes: &[u8], found: &mut Found) {
        found.literals.clear();
        found.literals.resize(self.literal_count, false);
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(bytes) {
                found.literals[m.pattern().as_usize()] = true;
            }
        }
        found.escaped = 0;
        if self.any_escaped != 0 {
            for i in self.escape.find_iter(bytes) {
                let hex = |k: usize| bytes.get(i + k).copied().and_then(crate::scan::hex_digit);
                if let (Some(hi), Some(lo)) = (hex(4), hex(5)) {
                    let byte = hi * 16 + lo;
                    if byte < 128 {
                        found.escaped |= 1u128 << byte;
                    }
                }
            }
        }
        found.spellings.clear();
        found.spellings.extend(self.spellings.iter().map(|f| f.find(bytes).is_some()));
    }

    /// Whether member `i` may match the record `found` describes.
    pub(crate) fn candidate(&self, i: usize, found: &Found) -> bool {
        match &self.members[i] {
            None => true,
            Some(m) => {
                m.literals.iter().any(|&l| found.literals[l])
                    || m.escaped & found.escaped != 0
                    || m.spellings.iter().any(|&s| found.spellings[s])
            }
        }
    }
}

fn bits_of(set: &[bool; 128]) -> u128 {
    set.iter().enumerate().filter(|(_, b)| **b).fold(0, |acc, (i, _)| acc | (1u128 << i))
}

#[derive(Debug, Clone)]
enum LiteralSearch {
    /// Every case variant of each literal's first three bytes, verified against the literals.
    Packed(aho_corasick::packed::Searcher),
    /// Where there is no Teddy (WASM), for a few literals: per literal, two of its bytes
    /// compared case-folded at 32 positions at a time (vectorised by the compiler: simd128 on
    /// WASM, SSE2 natively), each hit verified.
    Pairs(Vec<Pair>),
    /// The literals, ASCII-case-insensitively.
    Automaton(AhoCorasick),
}

/// Two bytes of a lowercase ASCII literal, at offsets `i <= j`, compared after OR-ing 0x20 into
/// the haystack's byte when the literal's byte is a letter (`F` | 0x20 = `f`; no other byte
/// maps to a letter that way).
#[derive(Debug, Clone)]
struct Pair {
    len: usize,
    i: usize,
    j: usize,
    ci: u8,
    cj: u8,
    fold_i: u8,
    fold_j: u8,
}

impl Pair {
    /// The literal's two rarest bytes (English letter frequencies; other bytes are rarer).
    fn new(literal: &[u8]) -> Pair {
        let rank =
            |b: u8| b"etaoinshrdlcumwfgypbvkjxqz".iter().position(|&c| c == b).map_or(26, |p| p);
        let mut by_rarity: Vec<usize> = (0..literal.len()).collect();
        sort::stable_by(&mut by_rarity, |&a, &b| rank(literal[b]).cmp(&rank(literal[a])));
        let a = by_rarity[0];
        let b = by_rarity.get(1).copied().unwrap_or(a);
        let (i, j) = (a.min(b), a.max(b));
        let fold = |c: u8| if c.is_ascii_alphabetic() { 0x20 } else { 0 };
        Pair {
            len: literal.len(),
            i,
            j,
            ci: literal[i],
            cj: literal[j],
            fold_i: fold(literal[i]),
            fold_j: fold(literal[j]),
        }
    }

    fn hit(&self, x: u8, y: u8) -> bool {
        (x | self.fold_i) == self.ci && (y | self.fold_j) == self.cj
    }

    /// The first start `>= from` of a window where both bytes match.
    fn find(&self, hay: &[u8], from: usize) -> Option<usize> {
        const W: usize = 32;
        let end = (hay.len() + 1).checked_sub(self.len)?; // starts are < end
        let mut s = from;
        while s + W <= end {
            let (Ok(a), Ok(b)) = (
                <&[u8; W]>::try_from(&hay[s + self.i..s + self.i + W]),
                <&[u8; W]>::try_from(&hay[s + self.j..s + self.j + W]),
            ) else {
                break;
            };
            // No early exit inside: a branch-free loop over fixed-size arrays vectorises.
            let mut any = false;
            for k in 0..W {
                any |= ((a[k] | self.fold_i) == self.ci) & ((b[k] | self.fold_j) == self.cj);
            }
            if any {
                return (0..W).map(|k| s + k).find(|&t| self.hit(a[t - s], b[t - s]));
            }
            s += W;
        }
        (s..end).find(|&t| self.hit(hay[t + self.i], hay[t + self.j]))
    }
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

/// The literals' bytes in either case.
fn literal_bytes(literals: &[Vec<u8>]) -> [bool; 128] {
    let mut set = [false; 128];
    for &c in literals.iter().flatten() {
        for v in [c.to_ascii_lowercase(), c.to_ascii_uppercase()] {
            if let Some(x) = set.get_mut(usize::from(v)) {
                *x = true;
            }
        }
    }
    set
}

/// The spellings of literal bytes other than raw ASCII and `\u00XX`: `\/` for `/`, and K/İ
/// raw and escaped (hex digits in either case).
fn other_spellings(bytes: &[bool; 128]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if bytes[usize::from(b'/')] {
        out.push(b"\\/".to_vec());
    }
    if bytes[usize::from(b'k')] {
        out.extend(["\u{212A}".as_bytes(), b"\\u212a", b"\\u212A"].map(<[u8]>::to_vec));
    }
    if bytes[usize::from(b'i')] {
        out.extend(["\u{130}".as_bytes(), b"\\u0130"].map(<[u8]>::to_vec));
    }
    out
}

impl Prefilter {
    /// The pre-filter implied by `query`, if one applies.
    pub(crate) fn for_query(query: &Query) -> Option<Prefilter> {
        let mut literals: Vec<Vec<u8>> =
            literals(query)?.into_iter().map(String::into_bytes).collect();
        sort::stable(&mut literals);
        literals.dedup();
        if literals.is_empty() {
            return None;
        }
        let escaped = literal_bytes(&literals);
        let others = other_spellings(&escaped)
            .iter()
            .map(|s| memchr::memmem::Finder::new(s).into_owned())
            .collect();
        let prefixes: Vec<Vec<u8>> =
            literals.iter().flat_map(|l| case_variants(&l[..l.len().min(3)])).collect();
        let mut builder = aho_corasick::packed::Config::new().builder();
        for p in &prefixes {
            builder.add(p);
        }
        let search = match (prefixes.len() <= 64).then(|| builder.build()).flatten() {
            Some(packed) => LiteralSearch::Packed(packed),
            None if literals.len() <= 8 => {
                LiteralSearch::Pairs(literals.iter().map(|l| Pair::new(l)).collect())
            }
            None => LiteralSearch::Automaton(automaton_of(&literals)?),
        };
        Some(Prefilter {
            literals,
            search,
            escape: memchr::memmem::Finder::new(b"\\u00").into_owned(),
            escaped,
            others,
        })
    }

    /// Whether a record with these bytes may match.
    pub(crate) fn may_match(&self, bytes: &[u8]) -> bool {
        self.has_literal(bytes)
            || self.has_escaped_literal_byte(bytes)
            || self.others.iter().any(|f| f.find(bytes).is_some())
    }

    fn has_literal(&self, bytes: &[u8]) -> bool {
        match &self.search {
            LiteralSearch::Automaton(ac) => ac.is_match(bytes),
            LiteralSearch::Pairs(pairs) => pairs.iter().zip(&self.literals).any(|(p, l)| {
                let mut at = 0;
                while let Some(s) = p.find(bytes, at) {
                    if bytes[s..s + l.len()].eq_ignore_ascii_case(l) {
                        return true;
                    }
                    at = s + 1;
                }
                false
            }),
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

    /// A `\u00XX` escape whose character is a byte of a literal (in either case).
    fn has_escaped_literal_byte(&self, bytes: &[u8]) -> bool {
        self.escape.find_iter(bytes).any(|i| {
            let hex = |k: usize| bytes.get(i + k).copied().and_then(crate::scan::hex_digit);
            match (hex(4), hex(5)) {
                (Some(hi), Some(lo)) => self.escaped.get(usize::from(hi * 16 + lo)) == Some(&true),
                _ => false,
            }
        })
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
            let should_required = crate::request::MinimumShouldMatch::required_should(
                *minimum_should_match,
                should.len(),
                must.is_empty() && filter.is_empty(),
            ) > 0;
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

    /// The same pre-filter forced onto the automaton (what WASM builds use for many literals).
    fn automaton(f: &Prefilter) -> Prefilter {
        let ac = automaton_of(&f.literals).expect("builds");
        Prefilter { search: LiteralSearch::Automaton(ac), ..f.clone() }
    }

    /// The same pre-filter forced onto the byte pairs (what WASM builds use for few literals).
    fn pairs(f: &Prefilter) -> Prefilter {
        let pairs = f.literals.iter().map(|l| Pair::new(l)).collect();
        Prefilter { search: LiteralSearch::Pairs(pairs), ..f.clone() }
    }

    #[test]
    fn the_prefilter_keeps_every_spelling_of_the_word_in_json_bytes() {
        let f = prefilter("Federer");
        assert!(matches!(f.search, LiteralSearch::Packed(_)) || cfg!(target_arch = "wasm32"));
        // A hit in the last window, past the 32-byte blocks, and a literal longer than the record.
        let p = pairs(&f);
        let long = format!("{}FEDERER", "x".repeat(70));
        assert!(p.may_match(long.as_bytes()) && !p.may_match(b"fede"));
        for f in [automaton(&f), pairs(&f), f] {
            for candidate in [
                r#"{"text":"FEDERER wins"}"#,
                r#"{"text":"go fEdErEr"}"#,
                r#"{"text":"\u0046ederer"}"#,
                r#"{"text":"fed\u0065rer"}"#,
                r#"{"text":"fede\u0052er"}"#,
                r#"{"x":"federer"}"#,
            ] {
                assert!(f.may_match(candidate.as_bytes()), "{candidate} ruled out");
            }
            for other in [
                r#"{"text":"Nadal wins"}"#,
                r#"{"text":"fede rer"}"#,
                r#"{"text":"\u00e9t\u00e9"}"#,
                // The API's escapes of characters that are not letters of the word.
                r#"{"source":"\u003ca href=\"http:\/\/x\"\u003eTwitter\u003c\/a\u003e \ud83c\udfbe \u2026"}"#,
                r#"{"text":"\u0041\u0042"}"#,
            ] {
                assert!(!f.may_match(other.as_bytes()), "{other} kept");
            }
        }
        let k = prefilter("kelvin");
        for k in [automaton(&k), pairs(&k), k] {
            assert!(k.may_match("{\"text\":\"\u{212A}elvin\"}".as_bytes()));
            assert!(k.may_match(br#"{"text":"\u212Aelvin"}"#));
            assert!(k.may_match(br#"{"text":"\u212aelvin"}"#));
            assert!(k.may_match(br#"{"text":"\u006Belvin"}"#));
        }
        let i = prefilter("istanbul");
        for i in [automaton(&i), pairs(&i), i] {
            assert!(i.may_match("{\"text\":\"\u{130}STANBUL\"}".as_bytes()));
            assert!(i.may_match(br#"{"text":"\u0130STANBUL"}"#));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The three searches (Teddy natively, byte pairs and the automaton where there is no
        /// Teddy) rule out exactly the same records, wherever the word sits, in any case.
        #[test]
        fn every_literal_search_agrees(
            word in "[a-zA-Z]{1,9}",
            hay in proptest::collection::vec(
                proptest::sample::select(&b"fedrFEDRabcxyz \\\"u0123456789{}:,K"[..]), 0..200),
            insert_at in 0usize..200,
            upper in proptest::collection::vec(proptest::bool::ANY, 9),
        ) {
            // Words that spell a number ("inf", "NaN") are numeric matches: no pre-filter.
            proptest::prop_assume!(word.parse::<f64>().is_err());
            let f = prefilter(&word);
            let mut hay = hay;
            if insert_at < hay.len() {
                // Sometimes the word itself, in some case, somewhere.
                let spelled: Vec<u8> = word.bytes().zip(&upper).map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
                hay.splice(insert_at..insert_at, spelled);
            }
            let want = f.may_match(&hay);
            proptest::prop_assert_eq!(pairs(&f).may_match(&hay), want);
            proptest::prop_assert_eq!(automaton(&f).may_match(&hay), want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// One pass of a set tells each member exactly what its own pre-filter would: the
        /// same records ruled out, whatever the words (shared, overlapping, with `k`, `i` or
        /// `/`) and wherever they sit, in any case or escaped.
        #[test]
        fn a_set_of_prefilters_agrees_with_each_member(
            words in proptest::collection::vec(proptest::option::of("[a-zA-Z/]{1,6}"), 1..8),
            hay in proptest::collection::vec(
                proptest::sample::select(&b"fedrFEDRkiKI/abxyz \\\"u0123456789{}:,"[..]), 0..200),
            insert in proptest::option::of((0usize..8, 0usize..200)),
        ) {
            let filters: Vec<Option<Prefilter>> = words
                .iter()
                .map(|w| {
                    let w = w.as_ref()?;
                    let req = parse_request(
                        &serde_json::json!({"topic": "t", "query": {"match": {"text": w}}}),
                        &Limits::default(),
                    )
                    .ok()?;
                    Prefilter::for_query(&req.query)
                })
                .collect();
            let mut hay = hay;
            if let Some((which, at)) = insert
                && let Some(Some(w)) = words.get(which)
            {
                let at = at.min(hay.len());
                hay.splice(at..at, w.bytes());
            }
            let set = PrefilterSet::new(&filters.iter().map(Option::as_ref).collect::<Vec<_>>());
            let mut found = Found::default();
            set.find(&hay, &mut found);
            for (i, f) in filters.iter().enumerate() {
                let want = f.as_ref().is_none_or(|f| f.may_match(&hay));
                proptest::prop_assert_eq!(set.candidate(i, &found), want, "member {} of {:?}", i, words);
            }
        }
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
