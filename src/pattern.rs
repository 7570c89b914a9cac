//! TouchDesigner-style name patterns (README, "Patterns"), used by `scope`, `address_scope`, MIDI device
//! matching and the Python `chans()`.
//!
//! A pattern is a space-separated list of terms applied left to right: a name matches when the
//! last term that matched it was an inclusion. A term starting with `^` excludes what it matches.
//! When the first term is an exclusion the list starts from "everything", so `^debug*` alone
//! means "all but debug…" (decision recorded in README, "Patterns").
//!
//! Inside a term: `*` any run, `?` one character, `[abc]` / `[a-z]` one listed character,
//! `[3-7]` an integer in a range, `[3-7:2]` a range with a step, `[2,5,13]` a list of integers
//! (parts may be combined: `[1-4,9]`). Integer brackets match a whole run of digits.
//!
//! This module owns parsing and matching only. Matching takes at most tokens × name length
//! steps, whatever the pattern (see `match_term`), and allocates only scratch of that size.

use std::fmt;

/// A compiled pattern. Cheap to match, built once per config.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    source: String,
    terms: Vec<Term>,
    starts_full: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    exclude: bool,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Literal(char),
    AnyRun,
    AnyOne,
    Class(Vec<(char, char)>),
    Ints(Vec<IntRange>),
}

#[derive(Clone, Debug, PartialEq)]
struct IntRange {
    lo: u64,
    hi: u64,
    step: u64,
}

impl IntRange {
    fn contains(&self, v: u64) -> bool {
        v >= self.lo && v <= self.hi && (v - self.lo) % self.step == 0
    }
}

/// Why a pattern did not compile; shown to the user next to the config position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatternError {
    #[error("unclosed `[` in pattern term \"{0}\"")]
    Unclosed(String),
    #[error("empty `[]` in pattern term \"{0}\"")]
    EmptyBracket(String),
    #[error("bad range `[{0}]`: {1}")]
    BadRange(String, &'static str),
}

impl Pattern {
    /// Compiles `source`; an empty pattern matches nothing.
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        let mut terms = Vec::new();
        for word in source.split_whitespace() {
            let (exclude, body) = match word.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            terms.push(Term {
                exclude,
                tokens: compile_term(body)?,
            });
        }
        let starts_full = terms.first().is_some_and(|t| t.exclude);
        Ok(Pattern {
            source: source.to_string(),
            terms,
            starts_full,
        })
    }

    /// The pattern that matches every name (`*`).
    pub fn all() -> Pattern {
        // `*` always compiles.
        Pattern::new("*").expect("`*` is a valid pattern")
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when this is exactly `*` (lets callers skip matching).
    pub fn is_all(&self) -> bool {
        self.terms.len() == 1 && !self.terms[0].exclude && self.terms[0].tokens == [Token::AnyRun]
    }

    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        let mut matched = self.starts_full;
        for term in &self.terms {
            if term.exclude == matched && match_term(&term.tokens, &chars) {
                matched = !term.exclude;
            }
        }
        matched
    }

    /// True when the pattern has no wildcard at all, so it can only match its own text.
    pub fn is_literal(&self) -> bool {
        self.terms
            .iter()
            .all(|t| !t.exclude && t.tokens.iter().all(|tok| matches!(tok, Token::Literal(_))))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn compile_term(term: &str) -> Result<Vec<Token>, PatternError> {
    let chars: Vec<char> = term.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                // Collapse runs of `*`: they mean the same and would make matching slower.
                if tokens.last() != Some(&Token::AnyRun) {
                    tokens.push(Token::AnyRun);
                }
            }
            '?' => tokens.push(Token::AnyOne),
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| PatternError::Unclosed(term.to_string()))?;
                let inner: String = chars[i + 1..close].iter().collect();
                tokens.push(compile_bracket(&inner, term)?);
                i = close;
            }
            c => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

fn compile_bracket(inner: &str, term: &str) -> Result<Token, PatternError> {
    if inner.is_empty() {
        return Err(PatternError::EmptyBracket(term.to_string()));
    }
    let numeric = inner.chars().any(|c| c.is_ascii_digit())
        && inner
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | ','));
    if numeric {
        let mut ranges = Vec::new();
        for part in inner.split(',') {
            ranges.push(
                parse_int_range(part).map_err(|why| PatternError::BadRange(inner.into(), why))?,
            );
        }
        return Ok(Token::Ints(ranges));
    }
    let chars: Vec<char> = inner.chars().collect();
    let mut class = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            let (a, b) = (chars[i], chars[i + 2]);
            if a > b {
                return Err(PatternError::BadRange(inner.into(), "range runs backwards"));
            }
            class.push((a, b));
            i += 3;
        } else {
            class.push((chars[i], chars[i]));
            i += 1;
        }
    }
    Ok(Token::Class(class))
}

fn parse_int_range(part: &str) -> Result<IntRange, &'static str> {
    let num = |s: &str| s.parse::<u64>().map_err(|_| "expected a whole number");
    let (span, step) = match part.split_once(':') {
        Some((span, step)) => (span, num(step)?),
        None => (part, 1),
    };
    if step == 0 {
        return Err("step must be at least 1");
    }
    let (lo, hi) = match span.split_once('-') {
        Some((lo, hi)) => (num(lo)?, num(hi)?),
        None => (num(span)?, num(span)?),
    };
    if lo > hi {
        return Err("range runs backwards");
    }
    Ok(IntRange { lo, hi, step })
}

/// Matches one term. Plain backtracking over `*` costs the name's length to the power of the
/// number of `*`s (seconds for `*a*b*c*d*` against a 1 KiB OSC address), so each `*` remembers
/// the longest rest of the name it failed on: it fails on every shorter rest too, and the whole
/// match stays within tokens × name length steps.
fn match_term(tokens: &[Token], name: &[char]) -> bool {
    // Indexed by the number of tokens left when a `*` is reached.
    let mut failed = vec![NONE_FAILED; tokens.len() + 1];
    match_tokens(tokens, name, &mut failed)
}

const NONE_FAILED: usize = usize::MAX;

fn match_tokens(tokens: &[Token], name: &[char], failed: &mut [usize]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return name.is_empty();
    };
    match first {
        Token::Literal(c) => name.first() == Some(c) && match_tokens(rest, &name[1..], failed),
        Token::AnyOne => !name.is_empty() && match_tokens(rest, &name[1..], failed),
        Token::Class(ranges) => {
            name.first()
                .is_some_and(|&c| ranges.iter().any(|&(a, b)| a <= c && c <= b))
                && match_tokens(rest, &name[1..], failed)
        }
        Token::AnyRun => {
            if rest.is_empty() {
                return true;
            }
            let known = failed[tokens.len()];
            if known != NONE_FAILED && name.len() <= known {
                return false;
            }
            // Rests no longer than `known` are known to fail.
            let tries = if known == NONE_FAILED {
                name.len() + 1
            } else {
                name.len() - known
            };
            if (0..tries).any(|skip| match_tokens(rest, &name[skip..], failed)) {
                return true;
            }
            failed[tokens.len()] = name.len();
            false
        }
        Token::Ints(ranges) => {
            let digits = name.iter().take_while(|c| c.is_ascii_digit()).count();
            // Integer brackets consume a whole run of digits, so `ch[1-3]` does not match `ch12`.
            if digits == 0 || digits > 18 {
                return false;
            }
            let value: u64 = name[..digits]
                .iter()
                .fold(0, |v, c| v * 10 + (*c as u64 - '0' as u64));
            ranges.iter().any(|r| r.contains(value)) && match_tokens(rest, &name[digits..], failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Pattern::new(p).unwrap().matches(name)
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("chan?", "chan1"));
        assert!(!m("chan?", "chan12"));
        assert!(m("mixer/*", "mixer/fader1"));
        assert!(!m("mixer/*", "fx/fader1"));
        assert!(m("*fader*", "mixer/fader1"));
    }

    /// Many `*` against a long name that never matches: backtracking took exponential time.
    #[test]
    fn many_wildcards_on_a_long_name_stay_linear() {
        let long = "a".repeat(4096);
        assert!(!m("*a*a*a*a*a*a*a*a*b", &long));
        assert!(m("*a*a*a*a*a*a*a*a*", &long));
        assert!(m("*a*[1-3]*b", "xxa2yyb"));
        assert!(!m("*a*[1-3]*b", "xxa4yyb"));
    }

    #[test]
    fn char_class() {
        assert!(m("[abc]x", "bx"));
        assert!(!m("[abc]x", "dx"));
        assert!(m("[a-c]x", "cx"));
    }

    #[test]
    fn integer_brackets_consume_whole_numbers() {
        assert!(m("chan[1-16]", "chan12"));
        assert!(!m("chan[1-16]", "chan17"));
        assert!(!m("ch[1-3]", "ch12"));
        assert!(m("c[2,5,13]", "c13"));
        assert!(!m("c[2,5,13]", "c3"));
        assert!(m("c[3-9:2]", "c7"));
        assert!(!m("c[3-9:2]", "c6"));
        assert!(m("c[1-4,9]x", "c9x"));
    }

    #[test]
    fn terms_apply_left_to_right() {
        assert!(m("* ^debug*", "fader"));
        assert!(!m("* ^debug*", "debug_level"));
        assert!(m("* ^debug* debug_keep", "debug_keep"));
        assert!(m("a b", "b"));
        assert!(!m("", "a"));
    }

    #[test]
    fn leading_exclusion_starts_from_everything() {
        assert!(m("^debug*", "fader"));
        assert!(!m("^debug*", "debug1"));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            Pattern::new("chan[1-").unwrap_err().to_string(),
            "unclosed `[` in pattern term \"chan[1-\""
        );
        assert_eq!(
            Pattern::new("c[9-3]").unwrap_err().to_string(),
            "bad range `[9-3]`: range runs backwards"
        );
        assert_eq!(
            Pattern::new("c[1-4:0]").unwrap_err().to_string(),
            "bad range `[1-4:0]`: step must be at least 1"
        );
        assert!(Pattern::new("x[]").is_err());
    }

    #[test]
    fn literal_and_all() {
        assert!(Pattern::new("*").unwrap().is_all());
        assert!(!Pattern::new("* ^x").unwrap().is_all());
        assert!(Pattern::new("Launch Control").unwrap().is_literal());
        assert!(!Pattern::new("Launch*").unwrap().is_literal());
    }
}
