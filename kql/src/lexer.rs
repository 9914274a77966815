//! Tokens of KQL text.
//!
//! `datetime(…)`, `timespan(…)`, `time(…)` and `dynamic(…)` are literals
//! whose parentheses hold raw text (`datetime(2026-10-25T00:00:00Z)`,
//! `dynamic(["a", 1])`), not expressions, so the lexer takes them whole.

use crate::error::{ErrorKind, KqlError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Long(i64),
    Real(f64),
    /// A timespan literal (`5m`, `1.5h`), in nanoseconds.
    Timespan(i64),
    Str(String),
    /// `datetime(…)` and friends: the name and the raw text inside.
    Raw(String, String),
    Sym(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub offset: usize,
    /// Where the token ends (byte offset just after it).
    pub end: usize,
}

const SYMBOLS: [&str; 29] = [
    "==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "|", "(", ")", "[", "]", "{", "}", ",", ";",
    ".", "=", "<", ">", "+", "-", "*", "/", "%", ":", "!", "~",
];

const RAW_LITERALS: [&str; 4] = ["datetime", "timespan", "time", "dynamic"];

/// The length in nanoseconds of a timespan unit, as KQL spells them.
pub(crate) fn unit_nanos(unit: &str) -> Option<i64> {
    Some(match unit {
        "d" | "day" | "days" => 86_400_000_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
        "m" | "min" | "minute" | "minutes" => 60_000_000_000,
        "s" | "sec" | "second" | "seconds" => 1_000_000_000,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "microsecond" | "microseconds" => 1_000,
        "tick" | "ticks" => 100,
        _ => return None,
    })
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, KqlError> {
    let bytes = text.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // Verbatim strings: @"C:\path" (no escapes).
        if c == b'@' && matches!(bytes.get(i + 1), Some(b'"') | Some(b'\'')) {
            let q = bytes[i + 1];
            let mut j = i + 2;
            let mut s = String::new();
            loop {
                match bytes.get(j) {
                    None => return Err(unterminated(text, start)),
                    Some(&b) if b == q => {
                        if bytes.get(j + 1) == Some(&q) {
                            s.push(q as char);
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    Some(_) => {
                        let ch = text[j..].chars().next().unwrap_or(' ');
                        s.push(ch);
                        j += ch.len_utf8();
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                offset: start,
                end: j + 1,
            });
            i = j + 1;
            continue;
        }
        // Obfuscated strings h"…" are strings here.
        let quote_at = if (c == b'h' || c == b'H')
            && matches!(bytes.get(i + 1), Some(b'"') | Some(b'\''))
            && !prev_is_word(bytes, i)
        {
            Some(i + 1)
        } else if c == b'"' || c == b'\'' {
            Some(i)
        } else {
            None
        };
        if let Some(q_at) = quote_at {
            let q = bytes[q_at];
            let mut j = q_at + 1;
            let mut s = String::new();
            loop {
                match bytes.get(j) {
                    None | Some(b'\n') => return Err(unterminated(text, start)),
                    Some(&b) if b == q => break,
                    Some(b'\\') => {
                        let e = bytes.get(j + 1).copied();
                        match e {
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            Some(b'r') => s.push('\r'),
                            Some(b'\\') => s.push('\\'),
                            Some(b'"') => s.push('"'),
                            Some(b'\'') => s.push('\''),
                            Some(_) => {
                                // An unknown escape keeps its backslash; the
                                // character after it (perhaps not ASCII) is
                                // read as any other.
                                s.push('\\');
                                j += 1;
                                continue;
                            }
                            None => return Err(unterminated(text, start)),
                        }
                        j += 2;
                    }
                    Some(_) => {
                        let ch = text[j..].chars().next().unwrap_or(' ');
                        s.push(ch);
                        j += ch.len_utf8();
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                offset: start,
                end: j + 1,
            });
            i = j + 1;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let mut real = false;
            if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_digit() {
                real = true;
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < bytes.len() && (bytes[j] == b'e' || bytes[j] == b'E') {
                let k = j + 1;
                let k = if matches!(bytes.get(k), Some(b'+') | Some(b'-')) {
                    k + 1
                } else {
                    k
                };
                if bytes.get(k).is_some_and(|b| b.is_ascii_digit()) {
                    real = true;
                    j = k;
                    while j < bytes.len() && bytes[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            let number = &text[i..j];
            // A unit right after the number makes a timespan: 5m, 1.5h.
            let mut u = j;
            while u < bytes.len() && bytes[u].is_ascii_alphabetic() {
                u += 1;
            }
            if u > j {
                let unit = &text[j..u];
                let Some(nanos) = unit_nanos(unit) else {
                    return Err(KqlError::at(
                        ErrorKind::Syntax,
                        text,
                        j,
                        format!(
                            "'{number}{unit}' is not a number or a timespan: unknown unit '{unit}'"
                        ),
                    )
                    .suggest(unit, ["d", "h", "m", "s", "ms", "microsecond", "tick"]));
                };
                let value: f64 = number.parse().unwrap_or(0.0);
                out.push(Token {
                    tok: Tok::Timespan((value * nanos as f64).round() as i64),
                    offset: start,
                    end: u,
                });
                i = u;
                continue;
            }
            let tok = if real {
                Tok::Real(number.parse().unwrap_or(f64::NAN))
            } else {
                match number.parse::<i64>() {
                    Ok(v) => Tok::Long(v),
                    Err(_) => {
                        return Err(KqlError::at(
                            ErrorKind::Syntax,
                            text,
                            start,
                            format!("the number {number} does not fit a long (64-bit integer)"),
                        ))
                    }
                }
            };
            out.push(Token {
                tok,
                offset: start,
                end: j,
            });
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            let word = &text[i..j];
            let mut k = j;
            while k < bytes.len() && bytes[k].is_ascii_whitespace() {
                k += 1;
            }
            let after_dot = out
                .last()
                .is_some_and(|t| t.tok == Tok::Sym(".") || t.tok == Tok::Sym(":"));
            if RAW_LITERALS.contains(&word) && bytes.get(k) == Some(&b'(') && !after_dot {
                let (raw, end) = raw_parens(text, k)?;
                out.push(Token {
                    tok: Tok::Raw(word.to_string(), raw),
                    offset: start,
                    end,
                });
                i = end;
                continue;
            }
            out.push(Token {
                tok: Tok::Ident(word.to_string()),
                offset: start,
                end: j,
            });
            i = j;
            continue;
        }
        // Bracketed names: ['My Column'].
        if c == b'[' {
            let mut k = i + 1;
            while k < bytes.len() && bytes[k] == b' ' {
                k += 1;
            }
            if matches!(bytes.get(k), Some(b'\'') | Some(b'"')) && !prev_is_value(&out) {
                let q = bytes[k];
                if let Some(close) = text[k + 1..].find(q as char) {
                    let name = &text[k + 1..k + 1 + close];
                    let mut e = k + 1 + close + 1;
                    while e < bytes.len() && bytes[e] == b' ' {
                        e += 1;
                    }
                    if bytes.get(e) == Some(&b']') {
                        out.push(Token {
                            tok: Tok::Ident(name.to_string()),
                            offset: start,
                            end: e + 1,
                        });
                        i = e + 1;
                        continue;
                    }
                }
            }
        }
        let Some(sym) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(KqlError::at(
                ErrorKind::Syntax,
                text,
                i,
                format!("unexpected character '{ch}'"),
            ));
        };
        out.push(Token {
            tok: Tok::Sym(sym),
            offset: start,
            end: i + sym.len(),
        });
        i += sym.len();
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: text.len(),
        end: text.len(),
    });
    Ok(out)
}

fn prev_is_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// Whether the token before a `[` is a value it would index (`x["a"]`),
/// rather than the start of a bracketed name.
fn prev_is_value(out: &[Token]) -> bool {
    matches!(
        out.last().map(|t| &t.tok),
        Some(Tok::Ident(_)) | Some(Tok::Sym(")")) | Some(Tok::Sym("]")) | Some(Tok::Raw(..))
    )
}

fn unterminated(text: &str, at: usize) -> KqlError {
    KqlError::at(
        ErrorKind::Syntax,
        text,
        at,
        "this string literal is not closed",
    )
}

/// The raw text between the parenthesis at `open` and its match, and the
/// offset just after the match.
fn raw_parens(text: &str, open: usize) -> Result<(String, usize), KqlError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut j = open;
    let mut quote: Option<u8> = None;
    while j < bytes.len() {
        let b = bytes[j];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    j += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok((text[open + 1..j].trim().to_string(), j + 1));
                    }
                }
                _ => {}
            },
        }
        j += 1;
    }
    Err(KqlError::at(
        ErrorKind::Syntax,
        text,
        open,
        "this parenthesis is not closed",
    ))
}
