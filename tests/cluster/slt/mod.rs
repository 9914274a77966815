//! SQL conformance as files: every `.slt` file under `tests/slt` runs in
//! two modes, and both must give what the file expects.
//!
//! - `in_process`: statements planned by the gateway's own planning code
//!   (`tarn_gateway::local`) over a demo lake generated here, run by
//!   DataFusion in this process; records labelled `onlyif cluster` are
//!   skipped, `skipif inprocess` likewise.
//! - `over_flight_sql`: the same files sent statement by statement over
//!   Flight SQL to a real `tarn standalone` (copy of the shared demo lake);
//!   `onlyif inprocess` records are skipped.
//!
//! Both modes format results through one function ([`format::output`]); an
//! error is its Tarn text, `TARN-<code> <NAME>: <cause>. Fix: <fix>`, so a
//! file matches codes with `statement error ^TARN-2206 PATH_OUTSIDE_LAKE`.
//! A file may start with `# roles: <workspace>=<role>, …` to run as a
//! caller holding only those roles (the default: owner everywhere, as dev
//! mode's callers).

mod flight;
mod format;
mod in_process;

use std::path::{Path, PathBuf};
use std::time::Instant;

use sqllogictest::{AsyncDB, MakeConnection, Runner};
use tarn_common::roles::Grants;

/// Longer than any statement of the files takes, far shorter than
/// "forever": a statement that hangs fails its record instead.
const STATEMENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `answer`, or an error once [`STATEMENT_LIMIT`] passed without one.
async fn within_limit<T>(
    answer: impl std::future::Future<Output = Result<T, SltError>>,
) -> Result<T, SltError> {
    tokio::time::timeout(STATEMENT_LIMIT, answer)
        .await
        .unwrap_or_else(|_| Err(SltError(format!("no answer within {STATEMENT_LIMIT:?}"))))
}

/// The `.slt` files, in name order.
fn files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .slt files in {}", dir.display());
    Ok(files)
}

/// The grants a file runs with: its `# roles:` line, else owner everywhere.
fn file_grants(file: &Path) -> anyhow::Result<Grants> {
    let text = std::fs::read_to_string(file)?;
    let Some(specs) = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .find_map(|l| l.strip_prefix("# roles:"))
    else {
        return Ok(Grants::owner_everywhere());
    };
    Grants::parse_specs(specs.split(',').map(str::trim), false)
        .map_err(|e| anyhow::anyhow!("{}: # roles: {e}", file.display()))
}

/// Error text a record's `error` regex is matched against.
#[derive(Debug)]
pub struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

impl SltError {
    /// A Tarn error from its code (as the protocol carries it beside the
    /// message) and its message: the message as is when it starts with that
    /// code, else marked, so an uncoded or mis-coded error never passes
    /// for a coded one.
    fn coded(code: Option<&str>, message: &str) -> Self {
        match code {
            Some(c) if message.starts_with(&format!("TARN-{c} ")) => Self(message.to_string()),
            Some(c) => Self(format!("code {c} with a message of another: {message}")),
            None => Self(format!("uncoded error: {message}")),
        }
    }
}

/// `TARN_SLT_COMPLETE=1`: rewrite each file's expected results with what
/// this mode answers (errors that still match their regex are kept), to be
/// reviewed with `git diff` before committing.
fn complete() -> bool {
    std::env::var_os("TARN_SLT_COMPLETE").is_some()
}

/// The second workspace of the lakes the files run on: `soc`, holding a
/// copy of the demo's `IdentityInfo`, so files can name another workspace.
pub(crate) fn add_soc_workspace(lake: &Path) -> std::io::Result<()> {
    tarn_tests::copy_dir(
        &lake.join("demo").join("IdentityInfo"),
        &lake.join("soc").join("IdentityInfo"),
    )
}

/// Runs every file with connections from `make(grants)`, `label` set for
/// `onlyif`/`skipif`; fails listing each failing record (file, line, SQL,
/// expected and actual).
async fn run_files<D, M>(label: &str, mut make: impl FnMut(Grants) -> M) -> anyhow::Result<()>
where
    D: AsyncDB<ColumnType = format::ColumnType>,
    M: MakeConnection<Conn = D>,
{
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files()? {
        let started = Instant::now();
        let mut runner = Runner::new(make(file_grants(&file)?));
        runner.add_label(label);
        runner.with_column_validator(sqllogictest::strict_column_validator);
        let result = if complete() {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(&file)
                .await
                .map_err(|e| e.display(false).to_string())
        };
        runner.shutdown_async().await;
        count += 1;
        eprintln!(
            "slt {label}: {} in {:?}{}",
            file.file_name().unwrap_or_default().to_string_lossy(),
            started.elapsed(),
            if result.is_ok() { "" } else { " FAILED" }
        );
        if let Err(e) = result {
            failures.push(e);
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {count} .slt files failed ({label}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

#[tokio::test]
async fn in_process() -> anyhow::Result<()> {
    let lake = in_process::demo_lake().await?;
    run_files("inprocess", |grants| {
        let lake = std::sync::Arc::clone(&lake.lake);
        move || {
            let lake = std::sync::Arc::clone(&lake);
            let grants = grants.clone();
            async move { in_process::InProcess::new(lake, grants) }
        }
    })
    .await
}

#[tokio::test]
async fn over_flight_sql() -> anyhow::Result<()> {
    let (_dir, lake) = flight::private_demo_lake()?;
    let cluster = tarn_tests::Cluster::start_with(&lake, &[], &[]).await?;
    let key = tarn_common::auth::TokenKey::load(&cluster.state.join("gateway.key"))?;
    let addr = cluster.flight.clone();
    let result = run_files("cluster", |grants| {
        let token = key.mint("slt", std::time::Duration::from_secs(3600), grants);
        let addr = addr.clone();
        move || flight::FlightSql::connect(addr.clone(), token.clone())
    })
    .await;
    if result.is_err() {
        eprintln!("cluster log:\n{}", cluster.log_tail());
    }
    result
}
