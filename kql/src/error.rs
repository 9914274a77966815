//! A KQL error placed in the text: line, column, a caret excerpt and,
//! for a misspelt name, the nearest known one.

use std::fmt;

/// What kind of mistake a [`KqlError`] reports; each maps to a code of
/// the catalogue where the gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not valid KQL, or a function or operator used wrongly.
    Syntax,
    /// A column the input does not have.
    UnknownColumn,
    /// A table (or `let` name) that does not exist.
    UnknownTable,
    /// Valid KQL that Tarn does not run (named in the message).
    Unsupported,
}

/// A KQL error, placed in the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KqlError {
    /// What kind of mistake.
    pub kind: ErrorKind,
    /// The cause, in one sentence.
    pub message: String,
    /// 1-based line of the mistake.
    pub line: usize,
    /// 1-based column (in characters) of the mistake.
    pub column: usize,
    /// The offending line with a caret under the mistake.
    pub excerpt: String,
    /// "did you mean `X`?" when a known name is near the one written.
    pub hint: Option<String>,
}

impl KqlError {
    /// An error at byte `offset` of `text`.
    pub fn at(kind: ErrorKind, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let source = text[line_start..line_end].trim_end_matches('\r');
        let excerpt = format!(
            "{line:>4} | {source}\n     | {}^",
            " ".repeat(column.saturating_sub(1))
        );
        Self {
            kind,
            message: message.into(),
            line,
            column,
            excerpt,
            hint: None,
        }
    }

    /// Adds "did you mean" for the known name nearest to `name`, if one
    /// is near enough to be a likely misspelling.
    pub fn suggest<'a>(mut self, name: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(best) = nearest(name, known) {
            self.hint = Some(format!("did you mean `{best}`?"));
        }
        self
    }
}

impl fmt::Display for KqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        write!(f, "\n{}", self.excerpt)
    }
}

impl std::error::Error for KqlError {}

/// The known name nearest to `name`: case-insensitive equality first,
/// then the smallest edit distance within a third of the name's length.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        if k == name {
            continue;
        }
        let d = if k.to_lowercase() == lower {
            0
        } else {
            distance(&lower, &k.to_lowercase())
        };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    let limit = (name.chars().count() / 3).max(1);
    best.filter(|(d, _)| *d <= limit)
        .map(|(_, k)| k.to_string())
}

fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = (0..=b.len()).collect();
    let mut prev: Vec<usize> = before.clone();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            // Two letters swapped (tkae for take) are one edit.
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                cur[j + 1] = cur[j + 1].min(before[j - 1] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_points_at_its_line_and_column() {
        let text = "SigninLogs\n| whre x";
        let e = KqlError::at(ErrorKind::Syntax, text, 13, "unknown operator 'whre'");
        assert_eq!((e.line, e.column), (2, 3));
        assert_eq!(e.excerpt, "   2 | | whre x\n     |   ^");
    }

    #[test]
    fn a_misspelt_name_gets_the_nearest_known_one() {
        let known = ["UserPrincipalName", "UserId", "IPAddress"];
        assert_eq!(
            nearest("UserPrincipleName", known).as_deref(),
            Some("UserPrincipalName")
        );
        assert_eq!(nearest("ipaddress", known).as_deref(), Some("IPAddress"));
        assert_eq!(nearest("Nothing", known), None);
        assert_eq!(nearest("tkae", ["take", "top"]).as_deref(), Some("take"));
    }
}
