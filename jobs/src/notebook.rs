//! Jupyter notebooks (nbformat 4) as job work.
//!
//! A notebook job runs the document's code cells in order. Parameters follow
//! papermill's convention, so a notebook written for papermill needs no
//! change: the first code cell tagged `parameters` holds `name = literal`
//! defaults, a run's values go into a new cell tagged `injected-parameters`
//! right after it, and the executed document, outputs included, is kept as
//! the run's result.
//!
//! A job has no one at the keyboard, so a cell that waits for typed input
//! would hang until the timeout. [`Notebook::parse`] refuses cells that, on
//! any line outside comments (and, for the SQL kernel, outside strings):
//!
//! - call `input(...)` or `raw_input(...)`;
//! - use `getpass`;
//! - use `ipywidgets`, or a `widgets.` attribute;
//! - run the `%debug` or `%pdb` magic (line or cell form), the interactive
//!   debugger;
//! - run a shell escape (`!cmd`) whose command prompts on a terminal:
//!   `read`, `sudo`, `su`, `passwd`, `ssh`, `vi`, `vim`, `nano`, `less`,
//!   `more`, `top`, `htop`.
//!
//! The list errs on the side of few false alarms: it catches the usual ways
//! a notebook asks a person for something, not every way a program can.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::params::{is_identifier, ParamValue};
use crate::script;

/// The kernel a notebook runs on when its metadata names none.
pub const DEFAULT_KERNEL: &str = "tarn-sql";
/// The KQL kernel: each code cell is one KQL query.
pub const KQL_KERNEL: &str = "tarn-kql";
/// The kernels jobs can run.
pub const SUPPORTED_KERNELS: &[&str] = &["tarn-sql", "tarn-kql", "tarn-python", "python3"];
/// The tag marking the cell of parameter defaults (papermill's name).
pub const PARAMETERS_TAG: &str = "parameters";
/// The tag marking the cell of a run's parameter values (papermill's name).
pub const INJECTED_TAG: &str = "injected-parameters";

/// Shell commands that wait for a person at a terminal.
const PROMPTING_COMMANDS: &[&str] = &[
    "read", "sudo", "su", "passwd", "ssh", "vi", "vim", "nano", "less", "more", "top", "htop",
];
/// Magics that start the interactive debugger.
const DEBUGGER_MAGICS: &[&str] = &["debug", "pdb"];

/// A parsed notebook: its kernel and runnable cells, plus the document
/// itself, kept so the executed notebook can be written back with outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    /// `metadata.kernelspec.name`, or [`DEFAULT_KERNEL`] when absent.
    pub kernel: String,
    /// The code cells with code in them, in document order.
    pub cells: Vec<Cell>,
    /// The document as given.
    pub doc: Value,
}

/// One code cell to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Position in the document's `cells` array (markdown cells included),
    /// so outputs go back to the right place.
    pub index: usize,
    /// The cell's source, its lines joined.
    pub source: String,
    /// `metadata.tags`.
    pub tags: Vec<String>,
    /// Tagged `parameters`: holds defaults, in papermill's convention.
    pub is_parameters: bool,
}

impl Notebook {
    /// Reads an nbformat 4 document, keeping its non-blank code cells.
    pub fn parse(doc: &Value) -> Result<Notebook, Error> {
        let shape = |message: String| Error::NotebookShape { message };
        let Some(top) = doc.as_object() else {
            return Err(shape("the document is not a JSON object".into()));
        };
        match top.get("nbformat") {
            Some(v) if v.as_u64() == Some(4) => {}
            Some(v) => {
                return Err(Error::NotNbformat4 {
                    found: v.to_string(),
                })
            }
            None => {
                return Err(Error::NotNbformat4 {
                    found: "missing".into(),
                })
            }
        }
        let kernel = doc
            .pointer("/metadata/kernelspec/name")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_KERNEL)
            .to_owned();
        if !SUPPORTED_KERNELS.contains(&kernel.as_str()) {
            return Err(Error::Kernel { kernel });
        }
        let Some(raw_cells) = top.get("cells").and_then(Value::as_array) else {
            return Err(shape("\"cells\" is missing or not an array".into()));
        };

        let mut cells = Vec::new();
        for (index, raw) in raw_cells.iter().enumerate() {
            let Some(obj) = raw.as_object() else {
                return Err(shape(format!("cell {index} is not an object")));
            };
            let Some(cell_type) = obj.get("cell_type").and_then(Value::as_str) else {
                return Err(shape(format!("cell {index} has no \"cell_type\"")));
            };
            if cell_type != "code" {
                continue;
            }
            let Some(source) = source_text(obj.get("source")) else {
                return Err(shape(format!(
                    "cell {index} \"source\" is not a string or an array of strings"
                )));
            };
            if source.trim().is_empty() {
                continue;
            }
            let tags = tags_of(obj);
            let cell = Cell {
                index,
                is_parameters: tags.iter().any(|t| t == PARAMETERS_TAG),
                source,
                tags,
            };
            check_interactive(&kernel, &cell)?;
            cells.push(cell);
        }
        if cells.is_empty() {
            return Err(Error::NoCodeCell);
        }
        Ok(Notebook {
            kernel,
            cells,
            doc: doc.clone(),
        })
    }

    /// The cell of defaults: the first tagged `parameters`, as in papermill.
    pub fn parameters_cell(&self) -> Option<&Cell> {
        self.cells.iter().find(|c| c.is_parameters)
    }

    /// The defaults declared in the parameters cell; empty without one.
    ///
    /// Each line is `name = literal` (a Python-style annotation,
    /// `name: type = literal`, is accepted too), where a literal is an
    /// integer, a float, a 'single' or "double" quoted string (escapes
    /// `\\ \' \" \n \t \r \uXXXX`), `True`/`False`/`true`/`false` or
    /// `None`/`null`; a `#` or `--` comment may follow it. Blank lines and
    /// lines starting with `#` or `--` are skipped. Reading literals rather
    /// than running the cell makes this work for the SQL kernel as for
    /// Python.
    pub fn defaults(&self) -> Result<BTreeMap<String, ParamValue>, Error> {
        let mut values = BTreeMap::new();
        let Some(cell) = self.parameters_cell() else {
            return Ok(values);
        };
        for (i, text) in cell.source.lines().enumerate() {
            let line = i + 1;
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("--") {
                continue;
            }
            let refuse = || Error::ParametersLine {
                cell: cell.index,
                line,
                text: text.to_owned(),
            };
            let (name, value) = parse_assignment(trimmed).ok_or_else(refuse)?;
            if values.insert(name.to_owned(), value).is_some() {
                return Err(Error::DuplicateParameter {
                    cell: cell.index,
                    line,
                    name: name.to_owned(),
                });
            }
        }
        Ok(values)
    }

    /// The document with the given cells' `outputs` and `execution_count`
    /// replaced: the executed notebook, kept as a run's result. Each entry
    /// is (cell index in the document, nbformat output objects, execution
    /// count). An index that is not a cell of the document is skipped, as
    /// it cannot come from this notebook's [`Cell::index`].
    pub fn with_outputs(&self, outputs: &[(usize, Vec<Value>, Option<u64>)]) -> Value {
        let mut doc = self.doc.clone();
        for (index, outs, count) in outputs {
            let cell = doc
                .get_mut("cells")
                .and_then(|c| c.get_mut(*index))
                .and_then(Value::as_object_mut);
            if let Some(cell) = cell {
                cell.insert("outputs".into(), Value::Array(outs.clone()));
                cell.insert(
                    "execution_count".into(),
                    count.map_or(Value::Null, Value::from),
                );
            }
        }
        doc
    }

    /// This notebook with a cell of `values` (see
    /// [`injected_parameters_cell`]) right after the parameters cell, or
    /// first when there is none, as papermill does. A cell injected by an
    /// earlier run is removed first, so re-running an executed notebook
    /// does not stack them. Cell indices are those of the new document.
    pub fn with_injected(&self, values: &BTreeMap<String, ParamValue>) -> Notebook {
        let injected = injected_parameters_cell(values);
        let injected_cell = Cell {
            index: 0,
            source: source_text(injected.get("source")).unwrap_or_default(),
            tags: vec![INJECTED_TAG.to_owned()],
            is_parameters: false,
        };
        let mut doc = self.doc.clone();
        let nbformat_minor = doc.get("nbformat_minor").and_then(Value::as_u64);
        let old_cells = match doc.get_mut("cells").and_then(Value::as_array_mut) {
            Some(cells) => std::mem::take(cells),
            None => Vec::new(),
        };
        let parameters_at = self.parameters_cell().map(|c| c.index);

        let mut injected = injected;
        if nbformat_minor.is_some_and(|m| m >= 5) {
            // nbformat 4.5 gives every cell an id.
            if let Some(obj) = injected.as_object_mut() {
                obj.insert("id".into(), Value::from(INJECTED_TAG));
            }
        }

        // Where each old cell lands in the new document, None if dropped.
        let mut new_index: Vec<Option<usize>> = Vec::with_capacity(old_cells.len());
        let mut new_cells = Vec::with_capacity(old_cells.len() + 1);
        let mut injected_at = None;
        if parameters_at.is_none() {
            injected_at = Some(0);
            new_cells.push(injected.clone());
        }
        for (old, raw) in old_cells.into_iter().enumerate() {
            let was_injected = raw
                .as_object()
                .is_some_and(|obj| tags_of(obj).iter().any(|t| t == INJECTED_TAG));
            if was_injected {
                new_index.push(None);
                continue;
            }
            new_index.push(Some(new_cells.len()));
            new_cells.push(raw);
            if Some(old) == parameters_at {
                injected_at = Some(new_cells.len());
                new_cells.push(injected.clone());
            }
        }
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("cells".into(), Value::Array(new_cells));
        }

        let mut cells: Vec<Cell> = self
            .cells
            .iter()
            .filter_map(|c| {
                let index = new_index.get(c.index).copied().flatten()?;
                Some(Cell { index, ..c.clone() })
            })
            .collect();
        if let Some(index) = injected_at {
            cells.push(Cell {
                index,
                ..injected_cell
            });
        }
        cells.sort_by_key(|c| c.index);
        Notebook {
            kernel: self.kernel.clone(),
            cells,
            doc,
        }
    }
}

/// A code cell tagged `injected-parameters` assigning `values`, one
/// `name = literal` line each (see [`ParamValue::to_literal`]), under a
/// `# Parameters` comment: papermill's form, which Python runs and
/// [`Notebook::defaults`] reads back.
pub fn injected_parameters_cell(values: &BTreeMap<String, ParamValue>) -> Value {
    let mut lines = vec!["# Parameters".to_owned()];
    lines.extend(
        values
            .iter()
            .map(|(name, value)| format!("{name} = {}", value.to_literal())),
    );
    let count = lines.len();
    let source: Vec<Value> = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            // nbformat keeps each line's newline except the last one's.
            Value::from(if i + 1 < count { line + "\n" } else { line })
        })
        .collect();
    json!({
        "cell_type": "code",
        "execution_count": null,
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": source,
    })
}

/// A cell's `source`: a string, or an array of strings to concatenate.
pub fn source_text(source: Option<&Value>) -> Option<String> {
    match source? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.concat()),
        _ => None,
    }
}

/// A cell's `metadata.tags`; entries that are not strings are ignored, as
/// no tag jobs look for could be one.
fn tags_of(cell: &Map<String, Value>) -> Vec<String> {
    cell.get("metadata")
        .and_then(|m| m.get("tags"))
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a SQL-kernel cell is KQL as a whole: its first line that is
/// not blank is the `%%kql` cell magic.
pub fn is_kql_cell(source: &str) -> bool {
    source
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| magic_name(l.trim_start(), "%%") == Some("kql"))
}

/// The SQL of a SQL-kernel cell: empty for a `%%kql` cell, and each
/// `%kql` line blanked (kept as an empty line, so line numbers stay).
pub fn sql_text(source: &str) -> String {
    if is_kql_cell(source) {
        return String::new();
    }
    source
        .split('\n')
        .map(|l| {
            if magic_name(l.trim_start(), "%") == Some("kql") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The name of the magic a line starts with (`%%kql` with `prefix`
/// `%%`, `%kql` with `%`): letters right after the prefix, then the end
/// of the line or a space.
fn magic_name<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    if prefix == "%" && rest.starts_with('%') {
        return None;
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    (!name.is_empty() && (after.is_empty() || after.starts_with(char::is_whitespace)))
        .then_some(name)
}

/// Refuses a cell that waits for a person; see the module docs for the list.
fn check_interactive(kernel: &str, cell: &Cell) -> Result<(), Error> {
    // A SQL cell can mention `input(` in a string; blank strings and
    // comments out so only code is searched.
    let code = if kernel == DEFAULT_KERNEL {
        script::mask(&sql_text(&cell.source))
    } else {
        cell.source.clone()
    };
    for (i, line) in code.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(what) = interactive_use(trimmed) {
            return Err(Error::Interactive {
                cell: cell.index,
                line: i + 1,
                what,
            });
        }
    }
    Ok(())
}

fn interactive_use(line: &str) -> Option<String> {
    if let Some(magic) = line.strip_prefix('%') {
        let magic = magic.strip_prefix('%').unwrap_or(magic);
        let name = magic.split_whitespace().next().unwrap_or("");
        if DEBUGGER_MAGICS.contains(&name) {
            return Some(format!(
                "runs %{name}, the interactive debugger, which waits for typed commands"
            ));
        }
    }
    if let Some(command) = line.strip_prefix('!') {
        let name = command.split_whitespace().next().unwrap_or("");
        if PROMPTING_COMMANDS.contains(&name) {
            return Some(format!(
                "runs `!{name}`, which waits for a person at a terminal"
            ));
        }
    }
    for function in ["input", "raw_input"] {
        if word_positions(line, function)
            .any(|(before, after)| before != Some('.') && after.trim_start().starts_with('('))
        {
            return Some(format!("calls {function}(), which waits for typed text"));
        }
    }
    if word_positions(line, "getpass").next().is_some() {
        return Some("uses getpass, which waits for a typed password".into());
    }
    if word_positions(line, "ipywidgets").next().is_some()
        || word_positions(line, "widgets").any(|(_, after)| after.starts_with('.'))
    {
        return Some("uses ipywidgets, whose widgets wait for clicks and typing".into());
    }
    None
}

/// Where `word` occurs as a whole word in `line`: the character before it
/// and the text after it, for each occurrence.
fn word_positions<'a>(
    line: &'a str,
    word: &'a str,
) -> impl Iterator<Item = (Option<char>, &'a str)> + 'a {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).filter_map(move |(at, _)| {
        let before = line[..at].chars().next_back();
        let after = &line[at + word.len()..];
        let whole = !before.is_some_and(is_ident) && !after.chars().next().is_some_and(is_ident);
        whole.then_some((before, after))
    })
}

/// `name = literal` (or `name: type = literal`), with an optional trailing
/// comment.
fn parse_assignment(line: &str) -> Option<(&str, ParamValue)> {
    let (target, rest) = line.split_once('=')?;
    let name = match target.split_once(':') {
        Some((name, annotation)) => {
            let annotation = annotation.trim();
            let plausible = !annotation.is_empty()
                && annotation
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_.[], |".contains(c));
            if !plausible {
                return None;
            }
            name.trim()
        }
        None => target.trim(),
    };
    if !is_identifier(name) {
        return None;
    }
    let (value, after) = parse_literal(rest.trim_start())?;
    let after = after.trim();
    (after.is_empty() || after.starts_with('#') || after.starts_with("--")).then_some((name, value))
}

/// Reads one literal from the start of `text`, returning it and what
/// follows it.
fn parse_literal(text: &str) -> Option<(ParamValue, &str)> {
    let quote = text.chars().next()?;
    if quote == '\'' || quote == '"' {
        return parse_string(text, quote);
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == '#')
        .unwrap_or(text.len());
    let (token, rest) = text.split_at(end);
    let value = match token {
        "True" | "true" => ParamValue::Bool(true),
        "False" | "false" => ParamValue::Bool(false),
        "None" | "null" => ParamValue::Null,
        _ => parse_number(token)?,
    };
    Some((value, rest))
}

fn parse_number(token: &str) -> Option<ParamValue> {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if digits.chars().all(|c| c.is_ascii_digit()) {
        return token.parse().ok().map(ParamValue::Int);
    }
    if !digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    let f: f64 = token.parse().ok()?;
    f.is_finite().then_some(ParamValue::Float(f))
}

fn parse_string(text: &str, quote: char) -> Option<(ParamValue, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, escaped) = chars.next()?;
                out.push(match escaped {
                    '\\' => '\\',
                    '\'' => '\'',
                    '"' => '"',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'u' => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        if hex.len() != 4 {
                            return None;
                        }
                        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                    }
                    _ => return None,
                });
            }
            c if c == quote => return Some((ParamValue::Text(out), &text[at + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
#[path = "notebook_tests.rs"]
mod tests;
