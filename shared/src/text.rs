//! Text analysis for `match` queries: Elasticsearch's `standard` analyzer.
//!
//! Words are split on Unicode word boundaries (UAX #29) and lowercased code point by code point,
//! as Lucene's `LowerCaseFilter` does (simple case mapping: `İ` becomes `i`, not `i̇`).

use unicode_segmentation::UnicodeSegmentation;

/// Lucene's maximum token length; longer words are split into pieces of this many chars.
const MAX_TOKEN_CHARS: usize = 255;

/// Lowercase one string with Java's per-code-point simple mapping.
pub fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Calls `f` with each analysed token of `text`, in order; stops early when `f` returns false.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str) -> bool) {
    for word in text.unicode_words() {
        let buf;
        let word: &str = if word.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            word
        } else {
            buf = lowercase(word);
            &buf
        };
        if word.chars().count() <= MAX_TOKEN_CHARS {
            if !f(word) {
                return;
            }
        } else {
            let chars: Vec<char> = word.chars().collect();
            for piece in chars.chunks(MAX_TOKEN_CHARS) {
                if !f(&piece.iter().collect::<String>()) {
                    return;
                }
            }
        }
    }
}

/// Whether `token` (an analysed token) may be one of the tokens of `text`: a check on the bytes
/// that spares word segmentation of texts that cannot hold it. Exact for ASCII tokens: only
/// ASCII characters, `K` (KELVIN SIGN) and `İ` lowercase to ASCII, so unless the text holds one
/// of those two, a word analysed into an ASCII token is that token in some ASCII case, and so a
/// substring of the text. Non-ASCII tokens are always possible.
pub fn may_hold_token(text: &str, token: &str) -> bool {
    let t = token.as_bytes();
    let Some(&first) = t.first() else { return true };
    if !token.is_ascii() || (!text.is_ascii() && text.contains(['\u{212A}', '\u{130}'])) {
        return true;
    }
    let b = text.as_bytes();
    let mut at = 0;
    while let Some(k) =
        memchr::memchr2(first.to_ascii_lowercase(), first.to_ascii_uppercase(), &b[at..])
    {
        let start = at + k;
        if b.get(start..start + t.len()).is_some_and(|w| w.eq_ignore_ascii_case(t)) {
            return true;
        }
        at = start + 1;
    }
    false
}

/// The analysed tokens of `text`.
pub fn analyze(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| {
        out.push(t.to_string());
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_analyzer_splits_on_word_boundaries_and_lowercases() {
        assert_eq!(analyze("Federer WINS at #Wimbledon!"), ["federer", "wins", "at", "wimbledon"]);
        assert_eq!(analyze("@rogerfederer's 20th"), ["rogerfederer's", "20th"]);
        assert_eq!(analyze("İSTANBUL"), ["istanbul"]);
        assert_eq!(analyze("日本語"), ["日", "本", "語"]);
        assert!(analyze("!!! ???").is_empty());
    }

    #[test]
    fn may_hold_token_is_never_wrong_about_a_token_that_is_there() {
        for text in ["Federer WINS", "go #FEDERER!", "\u{212A}elvin", "\u{130}STANBUL", "日本語 x"]
        {
            for token in analyze(text) {
                assert!(may_hold_token(text, &token), "{token} in {text}");
            }
        }
        assert!(!may_hold_token("Nadal wins", "federer"));
        assert!(!may_hold_token("fede rer", "federer"));
        assert!(may_hold_token("Ok", "\u{e9}t\u{e9}"));
    }
}
