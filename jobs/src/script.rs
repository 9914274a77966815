//! Splitting a SQL script into statements.
//!
//! A script is run one statement at a time so that a failure can name the
//! statement and its line, and so that DDL earlier in the script is visible
//! to the statements after it. The split only has to know where a `;` ends a
//! statement, so it recognises just what can hide a `;`:
//!
//! - single-quoted strings, with `''` as an escaped quote, and `E'...'`
//!   strings, where a backslash escapes the next character;
//! - double-quoted identifiers, with `""` as an escaped quote;
//! - `--` comments to the end of the line;
//! - `/* ... */` comments, which may nest.
//!
//! An unterminated string or comment runs to the end of the script; the
//! engine reports it when the statement is planned.

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Position among the script's statements, from 0.
    pub index: usize,
    /// The statement without its `;` and surrounding whitespace; comments
    /// inside it are kept.
    pub text: String,
    /// 1-based line of the statement's first character in the script (or
    /// notebook cell) it came from.
    pub line: usize,
}

/// What a stretch of script text is, as far as splitting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    /// SQL outside strings, quoted identifiers and comments.
    Code,
    /// A string literal, quotes included.
    Text,
    /// A double-quoted identifier, quotes included.
    Ident,
    /// A comment, markers included; a `--` comment stops before its newline.
    Comment,
}

/// A byte range of a script and what it is. Boundaries always fall on ASCII
/// characters, so they are valid `str` indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) region: Region,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Characters that continue an identifier. A `$` is among them because the
/// engine's dialect lets identifiers contain it, which matters for telling
/// `a$b` from a placeholder.
pub(crate) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Cuts a script into contiguous spans of code, strings, identifiers and
/// comments. Only ASCII bytes start or end a span, and UTF-8 never uses
/// ASCII bytes inside a multi-byte character, so scanning bytes is safe.
pub(crate) fn spans(sql: &str) -> Vec<Span> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut code_start = 0;
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        let (region, end) = match b[i] {
            b'\'' => {
                // E'..' only when the E is a word of its own, not the end of
                // an identifier such as `name'`.
                let escapes = i >= 1
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !is_ident_byte(b[i - 2]));
                (Region::Text, end_of_quoted(b, i, b'\'', escapes))
            }
            b'"' => (Region::Ident, end_of_quoted(b, i, b'"', false)),
            b'-' if next == Some(b'-') => (Region::Comment, end_of_line(b, i)),
            b'/' if next == Some(b'*') => (Region::Comment, end_of_block(b, i)),
            _ => {
                i += 1;
                continue;
            }
        };
        if code_start < i {
            out.push(Span {
                region: Region::Code,
                start: code_start,
                end: i,
            });
        }
        out.push(Span {
            region,
            start: i,
            end,
        });
        i = end;
        code_start = end;
    }
    if code_start < b.len() {
        out.push(Span {
            region: Region::Code,
            start: code_start,
            end: b.len(),
        });
    }
    out
}

fn end_of_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn end_of_line(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p)
}

fn end_of_block(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut j = start;
    while j < b.len() {
        if b[j..].starts_with(b"/*") {
            depth += 1;
            j += 2;
        } else if b[j..].starts_with(b"*/") {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

/// The script with strings, quoted identifiers and comments blanked to
/// spaces (newlines kept), so that a search for code cannot match inside
/// them and line numbers stay right.
pub(crate) fn mask(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for span in spans(sql) {
        let text = &sql[span.start..span.end];
        if span.region == Region::Code {
            out.push_str(text);
        } else {
            out.extend(text.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        }
    }
    out
}

/// Splits a script on the `;`s that end statements, dropping statements
/// that hold only whitespace and comments.
pub fn split(sql: &str) -> Vec<Statement> {
    let b = sql.as_bytes();
    // (start, end, has something besides whitespace and comments)
    let mut pieces: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = 0;
    let mut content = false;
    for span in spans(sql) {
        match span.region {
            Region::Code => {
                for (pos, &c) in b.iter().enumerate().take(span.end).skip(span.start) {
                    if c == b';' {
                        pieces.push((start, pos, content));
                        start = pos + 1;
                        content = false;
                    } else if !c.is_ascii_whitespace() {
                        content = true;
                    }
                }
            }
            Region::Text | Region::Ident => content = true,
            Region::Comment => {}
        }
    }
    pieces.push((start, b.len(), content));

    let mut out = Vec::new();
    let mut line = 1;
    let mut counted_to = 0;
    for (start, end, content) in pieces {
        let piece = &sql[start..end];
        let text = piece.trim();
        if !content || text.is_empty() {
            continue;
        }
        let first = start + (piece.len() - piece.trim_start().len());
        line += sql[counted_to..first].matches('\n').count();
        counted_to = first;
        out.push(Statement {
            index: out.len(),
            text: text.to_owned(),
            line,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_on_semicolons_and_numbers_lines() {
        let got = split("SELECT 1;\nSELECT 2;\n\n  SELECT 3");
        assert_eq!(
            got,
            vec![
                Statement {
                    index: 0,
                    text: "SELECT 1".into(),
                    line: 1
                },
                Statement {
                    index: 1,
                    text: "SELECT 2".into(),
                    line: 2
                },
                Statement {
                    index: 2,
                    text: "SELECT 3".into(),
                    line: 4
                },
            ]
        );
    }

    #[test]
    fn semicolons_inside_strings_identifiers_and_comments_do_not_split() {
        let sql = "SELECT 'a;b', 'it''s; fine', \"c;d\" FROM t -- no; split\n;\
                   SELECT /* x; /* nested; */ y; */ 2;SELECT E'\\'; still' AS e";
        assert_eq!(
            texts(sql),
            vec![
                "SELECT 'a;b', 'it''s; fine', \"c;d\" FROM t -- no; split",
                "SELECT /* x; /* nested; */ y; */ 2",
                "SELECT E'\\'; still' AS e",
            ]
        );
    }

    #[test]
    fn backslash_is_plain_in_a_standard_string() {
        assert_eq!(
            texts(r"SELECT 'C:\'; SELECT 2"),
            vec![r"SELECT 'C:\'", "SELECT 2"]
        );
    }

    #[test]
    fn drops_empty_and_comment_only_statements() {
        let sql = ";; -- just a note\n; /* block */ ;\nSELECT 1; -- trailing\n";
        let got = split(sql);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "SELECT 1");
        assert_eq!(got[0].index, 0);
        assert_eq!(got[0].line, 3);
        assert!(split("").is_empty());
        assert!(split("  \n-- only a comment").is_empty());
    }

    #[test]
    fn a_leading_comment_belongs_to_its_statement() {
        let got = split("SELECT 1;\n-- load\nINSERT INTO t VALUES (1)");
        assert_eq!(got[1].text, "-- load\nINSERT INTO t VALUES (1)");
        assert_eq!(got[1].line, 2);
    }

    #[test]
    fn unterminated_string_runs_to_the_end() {
        assert_eq!(
            texts("SELECT 'open; SELECT 2"),
            vec!["SELECT 'open; SELECT 2"]
        );
    }

    #[test]
    fn multibyte_text_is_kept_whole() {
        assert_eq!(
            texts("SELECT 'größe;ü' AS ä; SELECT '日本'"),
            vec!["SELECT 'größe;ü' AS ä", "SELECT '日本'"]
        );
    }

    #[test]
    fn mask_blanks_everything_but_code() {
        let sql = "SELECT 'x' -- c\n, \"y\"";
        let masked = mask(sql);
        assert_eq!(
            masked,
            format!(
                "SELECT {} {}\n, {}",
                " ".repeat(3),
                " ".repeat(4),
                " ".repeat(3)
            )
        );
        assert_eq!(masked.len(), sql.len());
    }

    /// One token of a generated statement; several can hide a `;`.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z_][A-Za-z0-9_]{0,6}",
            "[0-9]{1,4}",
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just(",".to_owned()),
            Just("=".to_owned()),
            "[a-z ;\"*/\\\\-]{0,8}".prop_map(|s| format!("'{s}'")),
            "[a-z ;']{0,4}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
            "[a-z ;'\"]{0,6}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            "[a-z ;'\"*/-]{0,8}".prop_map(|s| format!("-- {s}\n")),
            ("[a-z ;'\"\n-]{0,6}", "[a-z ;'\"-]{0,4}")
                .prop_map(|(a, b)| format!("/* {a} /* {b} */ */")),
        ]
    }

    /// A statement that starts and ends with a word, so it has content and
    /// no trailing `--` comment can swallow the `;` after it.
    fn statement() -> impl Strategy<Value = String> {
        (
            "[A-Za-z_][A-Za-z0-9_]{0,6}",
            prop::collection::vec(piece(), 0..8),
            "[A-Za-z_][A-Za-z0-9_]{0,6}",
            prop::sample::select(vec![" ", "\n", "  \n "]),
        )
            .prop_map(|(first, middle, last, sep)| {
                let mut parts = vec![first];
                parts.extend(middle);
                parts.push(last);
                parts.join(sep)
            })
    }

    proptest! {
        #[test]
        fn any_text_splits_into_pieces_of_itself(sql in any::<String>()) {
            for s in split(&sql) {
                prop_assert!(sql.contains(&s.text));
                prop_assert!(s.line >= 1 && s.line <= 1 + sql.matches('\n').count());
            }
            prop_assert_eq!(mask(&sql).lines().count(), sql.lines().count());
        }

        #[test]
        fn split_gives_back_joined_statements(
            statements in prop::collection::vec(statement(), 1..6),
            sep in prop::sample::select(vec![";", ";\n", "; ", ";\n\n  "]),
            trailing in any::<bool>(),
        ) {
            let mut sql = statements.join(sep);
            if trailing {
                sql.push(';');
            }
            let got = split(&sql);
            prop_assert_eq!(got.iter().map(|s| s.text.clone()).collect::<Vec<_>>(), statements);
            let mut from = 0;
            for (i, s) in got.iter().enumerate() {
                prop_assert_eq!(s.index, i);
                let at = from + sql[from..].find(&s.text).unwrap_or(0);
                prop_assert_eq!(s.line, 1 + sql[..at].matches('\n').count());
                from = at + s.text.len();
            }
        }
    }
}
