//! KQL conformance as files: every case under `tests/kql/*.toml` runs its
//! KQL and its hand-written SQL through one in-process session
//! (`tarn_gateway::local`) over a demo lake generated here, and the two
//! answers (and the literal table a case may give) must agree.
//!
//! Every case runs, every failure is collected, and the test fails once
//! listing each failing case with its KQL, its SQL and the first rows
//! that differ. `TARN_KQL_CASE=name[,name…]` runs only the cases whose
//! `file/name` contains one of the patterns; `TARN_KQL_SHOW=1` prints
//! both answers of every case run. The format is described in
//! `tests/kql/README.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
    DurationSecondType, Float16Type, Float32Type, Float64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde_json::Value;
use tarn_common::roles::Grants;
use tarn_common::TarnError;
use tarn_gateway::local::LocalSession;
use tarn_lake::Lake;

/// The time `now()` and `ago()` answer in every case: the end of the
/// demo's window (its data run up to, not including, this instant).
const QUERY_NOW: &str = "2026-11-01T00:00:00Z";

/// Longer than any case takes, far shorter than "forever".
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// How many differing rows a failure shows per side.
const SHOWN_ROWS: usize = 8;

/// Float cells are rounded to this many decimals before comparing.
const DECIMALS: i32 = 4;

/// One `.toml` file: its cases, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

/// One case: a KQL query and what it must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Unique within its file.
    name: String,
    /// The KQL query.
    kql: String,
    /// The same query in SQL (DataFusion's dialect), run by the same
    /// engine; required unless the case expects an error.
    sql: Option<String>,
    /// Compare rows in order (otherwise as multisets).
    #[serde(default)]
    ordered: bool,
    /// The case expects zero rows (two empty answers otherwise fail).
    #[serde(default)]
    empty: bool,
    /// Compare array and set cells (`make_set`, `make_list`) ignoring the
    /// order of their elements.
    #[serde(default)]
    unordered_arrays: bool,
    /// A literal table: a header line of column names, then one line per
    /// row, cells separated by `|`.
    expect: Option<String>,
    /// The KQL must fail so.
    error: Option<ErrorSpec>,
}

/// An expected error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorSpec {
    /// The code's name: `KQL_SYNTAX`, `COLUMN_NOT_FOUND`…
    code: String,
    /// 1-based line of the mistake.
    line: Option<usize>,
    /// 1-based column of the mistake (needs `line`).
    column: Option<usize>,
    /// Text the error (cause and fix) must contain.
    #[serde(default)]
    contains: Vec<String>,
}

/// A result rendered for comparing: column names and rows of cell texts.
#[derive(Debug, Clone, PartialEq)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The case files, in name order.
fn files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .toml files in {}", dir.display());
    Ok(files)
}

/// Every case of every file, as (`file/name`, case); fails on a file that
/// does not parse, a duplicate name or a case without anything to check.
fn load() -> anyhow::Result<Vec<(String, Case)>> {
    let mut all = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for file in files()? {
        let stem = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file)?;
        let parsed: CaseFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for case in parsed.cases {
            let id = format!("{stem}/{}", case.name);
            anyhow::ensure!(seen.insert(id.clone()), "{id}: two cases have this name");
            match (&case.error, &case.sql, &case.expect) {
                (Some(_), None, None) => {}
                (Some(_), _, _) => anyhow::bail!("{id}: an error case has no sql or expect"),
                (None, None, None) => anyhow::bail!("{id}: neither sql, expect nor error"),
                _ => {}
            }
            if let Some(e) = &case.error {
                anyhow::ensure!(
                    e.column.is_none() || e.line.is_some(),
                    "{id}: error column without line"
                );
            }
            all.push((id, case));
        }
    }
    Ok(all)
}

/// `TARN_KQL_CASE`: the patterns selecting the cases to run (all if unset).
fn selected(id: &str) -> bool {
    match std::env::var("TARN_KQL_CASE") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .any(|p| id == p || id.contains(p)),
        _ => true,
    }
}

fn show() -> bool {
    std::env::var_os("TARN_KQL_SHOW").is_some()
}

/// A demo lake generated for this run, as `tarn demo` generates one.
struct DemoLake {
    lake: Arc<Lake>,
    _dir: tempfile::TempDir,
}

async fn demo_lake() -> anyhow::Result<DemoLake> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lake");
    let root = tarn_lake::parse_root(&path.to_string_lossy())?;
    tarn_demo::generate(
        &root.join("demo/")?,
        &Default::default(),
        &tarn_demo::DemoOptions::default(),
    )
    .await?;
    Ok(DemoLake {
        lake: Lake::open(root)?,
        _dir: dir,
    })
}

fn session(lake: &Arc<Lake>) -> anyhow::Result<LocalSession> {
    LocalSession::new(
        Arc::clone(lake),
        "kql",
        Grants::owner_everywhere(),
        "demo",
        2,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

type Answer = Result<(SchemaRef, Vec<RecordBatch>), TarnError>;

async fn within_limit(answer: impl std::future::Future<Output = Answer>) -> Answer {
    tokio::time::timeout(CASE_LIMIT, answer)
        .await
        .unwrap_or_else(|_| {
            Err(TarnError::internal(format!(
                "no answer within {CASE_LIMIT:?}"
            )))
        })
}

#[tokio::test]
async fn conformance() -> anyhow::Result<()> {
    let cases = load()?;
    let lake = demo_lake().await?;
    let sql = session(&lake.lake)?;
    let kql = session(&lake.lake)?;
    let mut failures: Vec<String> = Vec::new();
    let pin = format!("set query_now = datetime({QUERY_NOW});");
    if let Err(e) = kql.run_kql(&pin).await {
        failures.push(format!(
            "setup: `{pin}` sent alone failed (cases using now()/ago() cannot agree): {e}"
        ));
    }
    let started = Instant::now();
    let mut ran = 0;
    let mut per_file: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (id, case) in &cases {
        if !selected(id) {
            continue;
        }
        ran += 1;
        let t = Instant::now();
        let problems = run_case(case, &sql, &kql).await;
        let file = id.split('/').next().unwrap_or_default().to_string();
        let entry = per_file.entry(file).or_default();
        entry.0 += 1;
        if problems.is_empty() {
            eprintln!("kql {id}: ok in {:?}", t.elapsed());
        } else {
            entry.1 += 1;
            eprintln!("kql {id}: FAILED in {:?}", t.elapsed());
            failures.push(report(id, case, &problems));
        }
    }
    let mut summary = String::new();
    for (file, (n, failed)) in &per_file {
        let _ = writeln!(summary, "  {file}: {} of {n} passed", n - failed);
    }
    eprintln!("kql: {ran} cases in {:?}\n{summary}", started.elapsed());
    anyhow::ensure!(ran > 0, "TARN_KQL_CASE selects no case");
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {ran} KQL cases failed:\n{summary}\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// A failing case: its name, its texts and what went wrong.
fn report(id: &str, case: &Case, problems: &[String]) -> String {
    let mut out = format!("==== {id}\n--- kql\n{}\n", case.kql.trim_end());
    if let Some(sql) = &case.sql {
        let _ = writeln!(out, "--- sql\n{}", sql.trim_end());
    }
    for p in problems {
        let _ = writeln!(out, "--- {}", p.trim_end());
    }
    out
}

/// Runs one case; what went wrong, if anything.
async fn run_case(case: &Case, sql: &LocalSession, kql: &LocalSession) -> Vec<String> {
    let mut problems = Vec::new();
    // The text as written, without the newline a TOML block adds.
    let kql_answer = within_limit(kql.run_kql(case.kql.trim_end())).await;
    if let Some(spec) = &case.error {
        match kql_answer {
            Ok((schema, batches)) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                problems.push(format!(
                    "expected error {} but the query ran: {} columns, {rows} rows",
                    spec.code,
                    schema.fields().len()
                ));
            }
            Err(e) => problems.extend(check_error(spec, &e)),
        }
        return problems;
    }
    let kql_table = match kql_answer {
        Ok((schema, batches)) => match render(&schema, &batches, case.unordered_arrays) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(format!("kql result cannot be rendered: {e}"));
                None
            }
        },
        Err(e) => {
            problems.push(format!("kql failed: {e}"));
            None
        }
    };
    let sql_table = match &case.sql {
        None => None,
        Some(text) => match within_limit(sql.run(text.trim_end())).await {
            Ok((schema, batches)) => match render(&schema, &batches, case.unordered_arrays) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("sql result cannot be rendered: {e}"));
                    None
                }
            },
            Err(e) => {
                problems.push(format!("sql failed (a mistake in the case): {e}"));
                None
            }
        },
    };
    if show() {
        for (side, t) in [("kql", &kql_table), ("sql", &sql_table)] {
            if let Some(t) = t {
                eprintln!("--- {side} answer\n{}", format_rows(&t.columns, &t.rows));
            }
        }
    }
    let expected = match case.expect.as_deref().map(parse_expected).transpose() {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("expect does not parse: {e}"));
            None
        }
    };
    // The zero-row rule: two empty answers prove nothing.
    for (side, t) in [("sql", &sql_table), ("kql", &kql_table)] {
        if let Some(t) = t {
            if t.rows.is_empty() && !case.empty {
                problems.push(format!(
                    "{side} answered zero rows; pick a filter that matches the demo data \
                     (or mark the case `empty = true`)"
                ));
            } else if !t.rows.is_empty() && case.empty {
                problems.push(format!(
                    "{side} answered {} rows; the case expects none",
                    t.rows.len()
                ));
            }
        }
    }
    if let (Some(k), Some(s)) = (&kql_table, &sql_table) {
        if let Some(d) = diff("kql", k, "sql", s, case.ordered) {
            problems.push(d);
        }
    }
    if let Some(e) = &expected {
        if let Some(k) = &kql_table {
            if let Some(d) = diff("kql", k, "expect", e, case.ordered) {
                problems.push(d);
            }
        }
        if let Some(s) = &sql_table {
            if let Some(d) = diff("sql", s, "expect", e, case.ordered) {
                problems.push(format!("(a mistake in the case) {d}"));
            }
        }
    }
    problems
}

fn check_error(spec: &ErrorSpec, e: &TarnError) -> Vec<String> {
    let mut problems = Vec::new();
    let text = e.to_string();
    if e.code.name() != spec.code {
        problems.push(format!(
            "expected error code {}, got {}: {text}",
            spec.code,
            e.code.name()
        ));
    }
    if let Some(line) = spec.line {
        let at = match spec.column {
            Some(c) => format!("(line {line}, column {c})"),
            None => format!("(line {line}, column "),
        };
        if !text.contains(&at) {
            problems.push(format!("expected the error placed at {at}: {text}"));
        }
    }
    for want in &spec.contains {
        if !text.contains(want.as_str()) {
            problems.push(format!("expected the error to contain {want:?}: {text}"));
        }
    }
    problems
}

/// The literal table of a case: a header line, then rows; `|` separates
/// cells, which are trimmed.
fn parse_expected(text: &str) -> anyhow::Result<Table> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let split = |l: &str| -> Vec<String> { l.split('|').map(|c| c.trim().to_string()).collect() };
    let columns = split(
        lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("no header line"))?,
    );
    let rows: Vec<Vec<String>> = lines.map(split).collect();
    for (i, r) in rows.iter().enumerate() {
        anyhow::ensure!(
            r.len() == columns.len(),
            "row {} has {} cells for {} columns",
            i + 1,
            r.len(),
            columns.len()
        );
    }
    Ok(Table { columns, rows })
}

/// How `a` (named `an`) differs from `b` (named `bn`): column names, then
/// rows (in order, or as multisets), showing the first differing rows.
fn diff(an: &str, a: &Table, bn: &str, b: &Table, ordered: bool) -> Option<String> {
    if a.columns != b.columns {
        return Some(format!(
            "columns differ\n  {an:>6}: {}\n  {bn:>6}: {}",
            a.columns.join(" | "),
            b.columns.join(" | ")
        ));
    }
    if ordered {
        let first = a
            .rows
            .iter()
            .zip(&b.rows)
            .position(|(x, y)| x != y)
            .or_else(|| (a.rows.len() != b.rows.len()).then(|| a.rows.len().min(b.rows.len())))?;
        let end = |t: &Table| (first + SHOWN_ROWS).min(t.rows.len());
        return Some(format!(
            "rows differ from row {} on ({an}: {} rows, {bn}: {} rows)\n  {an}:\n{}\n  {bn}:\n{}",
            first + 1,
            a.rows.len(),
            b.rows.len(),
            indent(&format_rows(
                &a.columns,
                &a.rows[first.min(a.rows.len())..end(a)]
            )),
            indent(&format_rows(
                &b.columns,
                &b.rows[first.min(b.rows.len())..end(b)]
            )),
        ));
    }
    let mut only_a = a.rows.clone();
    let mut only_b = Vec::new();
    for row in &b.rows {
        match only_a.iter().position(|r| r == row) {
            Some(i) => {
                only_a.swap_remove(i);
            }
            None => only_b.push(row.clone()),
        }
    }
    if only_a.is_empty() && only_b.is_empty() {
        return None;
    }
    only_a.sort();
    only_b.sort();
    let shown = |rows: &[Vec<String>]| {
        let n = rows.len().min(SHOWN_ROWS);
        let more = if rows.len() > n {
            format!("\n    … and {} more", rows.len() - n)
        } else {
            String::new()
        };
        format!("{}{more}", indent(&format_rows(&a.columns, &rows[..n])))
    };
    Some(format!(
        "rows differ ({an}: {} rows, {bn}: {} rows)\n  only in {an} ({}):\n{}\n  only in {bn} ({}):\n{}",
        a.rows.len(),
        b.rows.len(),
        only_a.len(),
        shown(&only_a),
        only_b.len(),
        shown(&only_b),
    ))
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn format_rows(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut out = columns.join(" | ");
    for r in rows {
        out.push('\n');
        out.push_str(&r.join(" | "));
    }
    if rows.is_empty() {
        out.push_str("\n(no rows)");
    }
    out
}

/// Column names and every cell as text.
fn render(schema: &SchemaRef, batches: &[RecordBatch], unordered: bool) -> anyhow::Result<Table> {
    let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(batch.num_columns());
            for col in batch.columns() {
                cells.push(cell(&value(col.as_ref(), row)?, unordered));
            }
            rows.push(cells);
        }
    }
    Ok(Table { columns, rows })
}

/// A cell's text: `NULL`, `(empty)` for an empty string, JSON text
/// (arrays, objects and strings holding them) in one canonical form.
fn cell(v: &Value, unordered: bool) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) if s.is_empty() => "(empty)".into(),
        Value::String(s) => {
            let t = s.trim_start();
            if t.starts_with('[') || t.starts_with('{') {
                if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                    return canonical(&parsed, unordered);
                }
            }
            s.clone()
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::Array(_) | Value::Object(_) => canonical(v, unordered),
    }
}

fn number(n: &serde_json::Number) -> String {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) => float(f),
        _ => n.to_string(),
    }
}

/// A float rounded to [`DECIMALS`]; integral values without a fraction,
/// so `3.0` and `3` agree.
fn float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    let scale = 10f64.powi(DECIMALS);
    let r = (f * scale).round() / scale;
    if r == 0.0 {
        return "0".into();
    }
    if r.fract() == 0.0 && r.abs() < 1e15 {
        return format!("{}", r as i64);
    }
    format!("{r}")
}

/// JSON text with keys sorted (and array elements too, if `unordered`).
fn canonical(v: &Value, unordered: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(items) => {
            let mut parts: Vec<String> = items.iter().map(|i| canonical(i, unordered)).collect();
            if unordered {
                parts.sort();
            }
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            let mut parts: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| {
                    (
                        Value::String(k.clone()).to_string(),
                        canonical(v, unordered),
                    )
                })
                .collect();
            parts.sort();
            let parts: Vec<String> = parts.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// One value of `array` as JSON: numbers (floats rounded), strings,
/// timestamps as `2026-10-24T02:10:00Z`, durations as KQL timespans
/// (`1.02:03:04`), lists as arrays, structs as objects.
fn value(array: &dyn Array, row: usize) -> anyhow::Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let display = || -> anyhow::Result<String> {
        Ok(arrow::util::display::array_value_to_string(array, row)?)
    };
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Value::Number(display()?.parse()?),
        DataType::Float16 => float_value(f64::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float_value(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float_value(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => float_value(display()?.parse::<f64>()?),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Timestamp(unit, _) => {
            let nanos = match unit {
                TimeUnit::Second => {
                    i128::from(array.as_primitive::<TimestampSecondType>().value(row))
                        * 1_000_000_000
                }
                TimeUnit::Millisecond => {
                    i128::from(array.as_primitive::<TimestampMillisecondType>().value(row))
                        * 1_000_000
                }
                TimeUnit::Microsecond => {
                    i128::from(array.as_primitive::<TimestampMicrosecondType>().value(row)) * 1_000
                }
                TimeUnit::Nanosecond => {
                    i128::from(array.as_primitive::<TimestampNanosecondType>().value(row))
                }
            };
            Value::String(timestamp(nanos))
        }
        DataType::Duration(unit) => {
            let nanos = match unit {
                TimeUnit::Second => {
                    i128::from(array.as_primitive::<DurationSecondType>().value(row))
                        * 1_000_000_000
                }
                TimeUnit::Millisecond => {
                    i128::from(array.as_primitive::<DurationMillisecondType>().value(row))
                        * 1_000_000
                }
                TimeUnit::Microsecond => {
                    i128::from(array.as_primitive::<DurationMicrosecondType>().value(row)) * 1_000
                }
                TimeUnit::Nanosecond => {
                    i128::from(array.as_primitive::<DurationNanosecondType>().value(row))
                }
            };
            Value::String(timespan(nanos))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            if v.months != 0 {
                Value::String(display()?)
            } else {
                Value::String(timespan(
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds),
                ))
            }
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            Value::String(timespan(
                i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000,
            ))
        }
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref())?,
        DataType::FixedSizeList(..) => list(array.as_fixed_size_list().value(row).as_ref())?,
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut map = serde_json::Map::new();
            for (i, f) in fields.iter().enumerate() {
                map.insert(f.name().clone(), value(s.column(i).as_ref(), row)?);
            }
            Value::Object(map)
        }
        DataType::Dictionary(..) => {
            let d = array.as_any_dictionary();
            let key = d.normalized_keys()[row];
            value(d.values().as_ref(), key)?
        }
        _ => Value::String(display()?),
    })
}

fn list(values: &dyn Array) -> anyhow::Result<Value> {
    (0..values.len())
        .map(|i| value(values, i))
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Value::Array)
}

fn float_value(f: f64) -> Value {
    let text = float(f);
    serde_json::from_str::<serde_json::Number>(&text)
        .map(Value::Number)
        .unwrap_or(Value::String(text))
}

/// `2026-10-24T02:10:00Z`, with a fraction only when there is one.
fn timestamp(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, sub) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
        None => format!("timestamp {nanos} ns"),
    }
}

/// KQL's timespan text: `[-][d.]hh:mm:ss[.fraction]`.
fn timespan(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = n % 1_000_000_000;
    let secs = n / 1_000_000_000;
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::from(sign);
    if d > 0 {
        let _ = write!(out, "{d}.");
    }
    let _ = write!(out, "{h:02}:{m:02}:{s:02}");
    if frac > 0 {
        let f = format!("{frac:09}");
        let _ = write!(out, ".{}", f.trim_end_matches('0'));
    }
    out
}

#[test]
fn cells_render_alike_across_types() {
    assert_eq!(float(3.0), "3");
    assert_eq!(float(2.000_04), "2");
    assert_eq!(float(0.123_456), "0.1235");
    assert_eq!(timespan(86_400_000_000_000 * 3), "3.00:00:00");
    assert_eq!(timespan(300_000_000_000), "00:05:00");
    assert_eq!(timespan(1_500_000_000), "00:00:01.5");
    assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    let v: Value = serde_json::from_str(r#"{"b":[2,1],"a":"x"}"#).unwrap_or_default();
    assert_eq!(cell(&v, true), r#"{"a":"x","b":[1,2]}"#);
    assert_eq!(
        cell(&Value::String(r#"{"b": 1, "a": null}"#.into()), false),
        r#"{"a":null,"b":1}"#
    );
}

#[test]
fn the_case_files_parse() -> anyhow::Result<()> {
    let cases = load()?;
    for (id, case) in &cases {
        if let Some(e) = &case.expect {
            parse_expected(e).map_err(|e| anyhow::anyhow!("{id}: expect: {e}"))?;
        }
    }
    Ok(())
}

/// KQL names tables under the SQL path's rules: a reader of `demo` reaches
/// no table of `soc` from any place a KQL query can name one, and a path
/// is no table. The owner's session, on the same lake, reads every `soc`
/// query (the control: the refusals are the grants', not the queries').
#[tokio::test]
async fn kql_reads_only_what_the_caller_may_read() -> anyhow::Result<()> {
    use tarn_common::ErrorCode;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lake");
    let root = tarn_lake::parse_root(&path.to_string_lossy())?;
    tarn_demo::generate(
        &root.join("demo/")?,
        &Default::default(),
        &tarn_demo::DemoOptions::default(),
    )
    .await?;
    crate::slt::add_soc_workspace(&path)?;
    let lake = Lake::open(root)?;
    let reader = Grants::parse_specs(["demo=reader"], false).map_err(anyhow::Error::msg)?;
    let reader = LocalSession::new(Arc::clone(&lake), "analyst", reader, "demo", 2)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let owner = session(&lake)?;
    let other_workspace = [
        "soc.IdentityInfo | take 1",
        "tarn.soc.IdentityInfo | take 1",
        "SigninLogs | join kind=inner (soc.IdentityInfo | project UserPrincipalName = AccountUPN) on UserPrincipalName | take 1",
        "SigninLogs | lookup (soc.IdentityInfo | project UserPrincipalName = AccountUPN, Dept = Department) on UserPrincipalName | take 1",
        "union SigninLogs, soc.IdentityInfo | take 1",
        "SigninLogs | union soc.IdentityInfo | take 1",
        "SigninLogs | where UserPrincipalName in ((soc.IdentityInfo | project AccountUPN)) | take 1",
        "let people = soc.IdentityInfo | project AccountUPN; SigninLogs | where UserPrincipalName in (people) | take 1",
        "explain soc.IdentityInfo | take 1",
    ];
    for q in other_workspace {
        let (_, rows) = owner
            .run_kql(q)
            .await
            .map_err(|e| anyhow::anyhow!("the owner's {q}: {e}"))?;
        anyhow::ensure!(
            rows.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "the owner's {q} answered nothing"
        );
        match reader.run_kql(q).await {
            Err(e) if e.code == ErrorCode::WorkspaceNotFound => {}
            Err(e) => anyhow::bail!("{q}: refused with {e}, not WORKSPACE_NOT_FOUND"),
            Ok(_) => anyhow::bail!("a reader of demo ran {q}"),
        }
    }
    for q in [
        "['/etc/passwd'] | take 1",
        "['file:///etc/passwd'] | take 1",
        "['../soc/IdentityInfo'] | take 1",
        "demo.['s3://bucket/x'] | take 1",
    ] {
        match owner.run_kql(q).await {
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::PathOutsideLake | ErrorCode::TableNotFound
                ) => {}
            Err(e) => anyhow::bail!("{q}: refused with {e}"),
            Ok(_) => anyhow::bail!("{q} ran"),
        }
    }
    Ok(())
}
