//! Diagnostics: one problem of a config, with its position, rendered as
//! `file:line:col: error: message`. Also the "did you mean" helper.

use std::fmt;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line and column (in characters).
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, sev, self.message
        )
    }
}

/// Collects diagnostics for one source file.
pub struct Diagnostics<'s> {
    file: String,
    src: &'s str,
    pub list: Vec<Diagnostic>,
}

impl<'s> Diagnostics<'s> {
    pub fn new(file: &str, src: &'s str) -> Self {
        Diagnostics {
            file: file.to_string(),
            src,
            list: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Error, message.into());
    }

    pub fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Warning, message.into());
    }

    fn push(&mut self, span: Range<usize>, severity: Severity, message: String) {
        let (line, col) = line_col(self.src, span.start);
        self.list.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            severity,
            message,
        });
    }

    pub fn src(&self) -> &'s str {
        self.src
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics sorted by position, errors before warnings at the same place.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| (d.line, d.col, d.severity));
        self.list.dedup();
        self.list
    }
}

/// 1-based line and column of byte offset `at` in `src`.
pub fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let before = &src[..floor_char_boundary(src, at)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit_once('\n')
        .map_or(before, |(_, tail)| tail)
        .chars()
        .count()
        + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The candidate closest to `word` when it is close enough to be a likely typo. Distance is
/// optimal string alignment rather than plain Levenshtein: a swap of two neighbours (`prot` for
/// `port`, the commonest typo) counts as one edit.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let max = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|&(d, _)| d <= max)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `, did you mean "x"?` or nothing.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!("; did you mean \"{c}\"?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
    }

    #[test]
    fn suggestions_only_for_close_names() {
        assert_eq!(did_you_mean("lfo2", ["lfo1", "faders"]), Some("lfo1"));
        assert_eq!(did_you_mean("prot", ["port", "queued"]), Some("port"));
        assert_eq!(did_you_mean("zzzz", ["lfo1"]), None);
    }

    #[test]
    fn suggestion_names_the_nearest_and_counts_characters() {
        assert_eq!(
            suggestion("methd", ["autoname", "datindex", "method"]),
            "; did you mean \"method\"?"
        );
        // Ties go to the first candidate; an empty list suggests nothing.
        assert_eq!(did_you_mean("lfo", ["lfo1", "lfo2"]), Some("lfo1"));
        assert_eq!(suggestion("lfo", []), "");
        // Distance is in characters, not bytes: one accented letter is one edit.
        assert_eq!(did_you_mean("fadér", ["fader"]), Some("fader"));
    }
}
