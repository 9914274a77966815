//! What a cell holds: the queries it runs and the language of each.
//!
//! A `tarn-sql` cell is SQL statements separated by `;`; a `tarn-kql`
//! cell is one KQL query (its `let` and `set` statements and one tabular
//! expression). Either kernel also runs the other language:
//!
//! - a cell whose first line is `%%kql` (or `%%sql`) is, below that line,
//!   one KQL query (or SQL statements);
//! - a line `%kql <query>` (or `%sql <statement>`) is one query of its
//!   own, between the statements before and after it.
//!
//! A KQL query keeps its place in the cell: the lines above it are kept
//! as empty lines and a `%kql` prefix as spaces, so the line and column a
//! KQL error names are the cell's.

use tarn_common::{ErrorCode, TarnError};

use crate::session::Language;

/// One query of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellQuery {
    /// What it is written in.
    pub language: Language,
    /// Its text (a KQL query padded to its place in the cell).
    pub text: String,
}

/// The magics a cell may use, for messages.
const MAGICS: &str = "%%kql, %kql, %%sql and %sql";

/// The queries of a cell of a kernel whose cells are in `default`, in
/// order. An unknown magic is refused, naming the known ones.
pub fn cell_queries(code: &str, default: Language) -> Result<Vec<CellQuery>, TarnError> {
    let lines: Vec<&str> = code.split('\n').collect();
    if let Some(first) = lines.iter().position(|l| !l.trim().is_empty()) {
        if let Some((name, rest)) = magic(lines[first], "%%") {
            let language = known(name, "%%")?;
            if !rest.trim().is_empty() {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "%%{name} takes no arguments, but was given {:?}",
                        rest.trim()
                    ),
                )
                .with_fix(format!(
                    "put the query on the lines below %%{name}, and nothing after it on its line"
                )));
            }
            let body = format!(
                "{}{}",
                "\n".repeat(first + 1),
                lines[first + 1..].join("\n")
            );
            return Ok(queries_in(&body, language));
        }
    }
    let mut out = Vec::new();
    // The lines of the default language since the last magic line, kept
    // in place (the others blank).
    let mut chunk: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match magic(line, "%") {
            Some((name, rest)) => {
                let language = known(name, "%")?;
                out.extend(queries_in(&chunk.join("\n"), default));
                chunk = vec![""; i + 1];
                let indent = line.len() - line.trim_start().len() + 1 + name.len();
                let text = format!("{}{}{}", "\n".repeat(i), " ".repeat(indent), rest);
                out.extend(queries_in(&text, language));
            }
            None => chunk.push(line),
        }
    }
    out.extend(queries_in(&chunk.join("\n"), default));
    Ok(out)
}

/// The queries of a stretch of one language: SQL statements split at
/// their `;`s, or the KQL text as one query (none when it is only
/// whitespace and comments).
fn queries_in(text: &str, language: Language) -> Vec<CellQuery> {
    match language {
        Language::Sql => super::split_statements(text)
            .into_iter()
            .map(|text| CellQuery { language, text })
            .collect(),
        Language::Kql => {
            let blank = text.lines().all(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with("//")
            });
            if blank {
                Vec::new()
            } else {
                vec![CellQuery {
                    language,
                    text: text.trim_end().to_string(),
                }]
            }
        }
    }
}

/// The language a magic names.
fn known(name: &str, prefix: &str) -> Result<Language, TarnError> {
    match name {
        "kql" => Ok(Language::Kql),
        "sql" => Ok(Language::Sql),
        other => Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("{prefix}{other} is not a magic this kernel runs; it runs {MAGICS}"),
        )
        .with_fix(
            "start the cell with %%kql or %%sql, or a line with %kql or %sql; Python runs in \
             the tarn-python kernel",
        )),
    }
}

/// The magic a line starts with (after any indentation): its name
/// (letters, digits, `_` right after `prefix`) and the rest of the line.
/// `%%` is no line magic.
fn magic<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = line.trim_start().strip_prefix(prefix)?;
    if prefix == "%" && rest.starts_with('%') {
        return None;
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_alphabetic());
    (starts_with_letter && (after.is_empty() || after.starts_with(char::is_whitespace)))
        .then_some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(code: &str, default: Language) -> Vec<(Language, String)> {
        cell_queries(code, default)
            .unwrap()
            .into_iter()
            .map(|q| (q.language, q.text))
            .collect()
    }

    #[test]
    fn a_kql_cell_is_one_query_kept_in_its_place() {
        let got = pieces("%%kql\nlet n = 3;\nSigninLogs\n| take n\n", Language::Sql);
        assert_eq!(
            got,
            vec![(
                Language::Kql,
                "\nlet n = 3;\nSigninLogs\n| take n".to_string()
            )]
        );
        // In the KQL kernel, with no magic, the whole cell is the query.
        assert_eq!(
            pieces("SigninLogs | count", Language::Kql),
            vec![(Language::Kql, "SigninLogs | count".to_string())]
        );
        assert_eq!(
            pieces("// only a note\n\n", Language::Kql),
            Vec::<(Language, String)>::new()
        );
    }

    #[test]
    fn line_magics_run_between_the_statements_around_them() {
        let got = pieces(
            "SELECT 1; SELECT 2\n%kql SigninLogs | count\nSELECT 3",
            Language::Sql,
        );
        assert_eq!(
            got,
            vec![
                (Language::Sql, "SELECT 1".to_string()),
                (Language::Sql, "SELECT 2".to_string()),
                (Language::Kql, "\n     SigninLogs | count".to_string()),
                (Language::Sql, "SELECT 3".to_string()),
            ]
        );
        // The KQL kernel runs SQL the same way.
        assert_eq!(
            pieces("%%sql\nSELECT 1; SELECT 2", Language::Kql),
            vec![
                (Language::Sql, "SELECT 1".to_string()),
                (Language::Sql, "SELECT 2".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_magics_and_arguments_are_refused_with_the_known_ones() {
        let e = cell_queries("%%python\nprint(1)", Language::Sql).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(
            e.message.contains("%%python") && e.message.contains("%%kql"),
            "{e}"
        );
        let e = cell_queries("%%kql SigninLogs\n| take 1", Language::Sql).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        // A `%` that is SQL's modulo is no magic.
        assert_eq!(
            pieces("SELECT 7\n% 2", Language::Sql),
            vec![(Language::Sql, "SELECT 7\n% 2".to_string())]
        );
    }
}
