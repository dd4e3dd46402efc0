//! The `wildcard` query's pattern: `*` matches any sequence of characters (also none), `?` any
//! one character, `\` takes the next character literally; the whole value must match.
//!
//! A matcher of its own rather than a regular expression: it needs no regex engine or Unicode
//! tables in the WASM module, and the greedy match with one backtrack point (the last `*`) is
//! O(pattern × value) at worst, so no pattern can make a record slow.

use crate::text;

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// This character (lowercased when the match is case-insensitive).
    Char(char),
    /// `?`: any one character.
    One,
    /// `*`: any sequence, also empty.
    Any,
}

/// A compiled `wildcard` pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard {
    tokens: Vec<Token>,
    case_insensitive: bool,
}

impl Wildcard {
    /// Compile `pattern`; `case_insensitive` compares both sides lowercased, as `prefix` and
    /// `term` do ([`text::lowercase`]).
    pub fn new(pattern: &str, case_insensitive: bool) -> Wildcard {
        let pattern = if case_insensitive { text::lowercase(pattern) } else { pattern.to_string() };
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                // Consecutive stars are one star (and keep the backtracking single).
                '*' if tokens.last() == Some(&Token::Any) => continue,
                '*' => Token::Any,
                '?' => Token::One,
                // A trailing backslash escapes nothing, as Lucene's WildcardQuery reads it.
                '\\' => match chars.next() {
                    Some(n) => Token::Char(n),
                    None => continue,
                },
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Wildcard { tokens, case_insensitive }
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        if self.case_insensitive && !value.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase())
        {
            let lowered = text::lowercase(value);
            return self.matches_chars(&lowered);
        }
        self.matches_chars(value)
    }

    /// The greedy match, over byte positions of `value` (no copy of it: this runs per record).
    fn matches_chars(&self, value: &str) -> bool {
        let tokens = &self.tokens;
        let next_char = |at: usize| value[at..].chars().next();
        let (mut t, mut v) = (0, 0);
        // The last `*` seen and the value position it is tried at: on a mismatch, that star takes
        // one more character. Earlier stars never need to: any later star absorbs the difference.
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = next_char(v) {
            match tokens.get(t) {
                Some(Token::Any) => {
                    star = Some((t, v));
                    t += 1;
                }
                Some(Token::One) => {
                    t += 1;
                    v += c.len_utf8();
                }
                Some(Token::Char(p)) if *p == c => {
                    t += 1;
                    v += c.len_utf8();
                }
                _ => match star {
                    Some((star_t, star_v)) => {
                        let taken = next_char(star_v).map_or(1, char::len_utf8);
                        star = Some((star_t, star_v + taken));
                        t = star_t + 1;
                        v = star_v + taken;
                    }
                    None => return false,
                },
            }
        }
        tokens[t..].iter().all(|token| *token == Token::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, value: &str) -> bool {
        Wildcard::new(pattern, false).is_match(value)
    }

    #[test]
    fn stars_questions_and_escapes() {
        assert!(m("*federer*", "roger federer wins"));
        assert!(m("fed*", "federer"));
        assert!(!m("fed*", "a federer"));
        assert!(m("f?d", "fed"));
        assert!(!m("f?d", "fd"));
        assert!(m("*", ""));
        assert!(!m("?", ""));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*a*a*a*b", "aaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaa"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\?", "a?"));
        assert!(m("100\\", "100"));
        assert!(m("ś*", "świątek"), "characters, not bytes");
        assert!(m("?wiątek", "świątek"));
    }

    #[test]
    fn case_insensitive_lowercases_both_sides() {
        let w = Wildcard::new("*ŚWIĄTEK*", true);
        assert!(w.is_match("Iga Świątek"));
        assert!(w.is_match("iga świątek"));
        assert!(!Wildcard::new("*ŚWIĄTEK*", false).is_match("iga świątek"));
        assert!(Wildcard::new("Fed?rer", true).is_match("FEDERER"));
    }

    /// The reference: a plain recursive matcher, exponential but obviously right.
    fn reference(tokens: &[Token], value: &[char]) -> bool {
        match tokens.split_first() {
            None => value.is_empty(),
            Some((Token::Any, rest)) => (0..=value.len()).any(|i| reference(rest, &value[i..])),
            Some((Token::One, rest)) => !value.is_empty() && reference(rest, &value[1..]),
            Some((Token::Char(c), rest)) => {
                value.first() == Some(c) && reference(rest, &value[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_recursive_reference(pattern in "[abś*?]{0,8}", value in "[abśc]{0,10}") {
            let w = Wildcard::new(&pattern, false);
            let chars: Vec<char> = value.chars().collect();
            prop_assert_eq!(w.is_match(&value), reference(&w.tokens, &chars));
        }
    }
}
