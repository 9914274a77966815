//! A deterministic generator of a synthetic, Microsoft-Sentinel-like security workspace.
//!
//! [`generate`] writes five Delta tables — `IdentityInfo`, `SigninLogs`, `AuditLogs`,
//! `SecurityEvent` and `DeviceNetworkEvents` — for a fictional organisation, `contoso.com`:
//! about 200 people in seven cities, about 40 Windows computers (workstations `WKS-1001`…,
//! servers `SRV-…`, domain controllers `DC01`/`DC02` and the file server `FS01`), and
//! `days` days of ordinary activity with a daily and weekly rhythm in each person's own
//! time zone. On top of the background a handful of attacks are planted at fixed offsets
//! from [`DemoOptions::end`]; [`INCIDENTS`] names them, with the exact users, addresses and
//! computers involved, so that documentation and tests can point at them.
//!
//! The output depends only on [`DemoOptions`]: the generator uses its own small PRNG
//! (splitmix64) rather than an external crate, and never reads the clock.
//!
//! The crate is laid out by job: `rng` is the seeded random source, `time` the units and
//! the working week, `org` the fixed facts about the organisation and `world` the people and
//! computers built from the options, `catalog` what the simulation picks from, `rows` the
//! rows it produces, `sim` the ordinary activity day by day (one module per kind of
//! activity), `incidents` the planted attacks, and `tables` the Arrow batches. This file
//! runs them in order and writes each table as one Delta commit.

mod catalog;
mod error;
mod incidents;
mod org;
mod rng;
mod rows;
mod sim;
mod tables;
#[cfg(test)]
mod test_util;
mod time;
mod world;

pub use error::DemoError;
pub use incidents::{Incident, INCIDENTS};

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use url::Url;

use crate::rng::Rng;
use crate::sim::Sim;
use crate::tables::{
    audit_logs, device_network_events, identity_info, security_event, signin_logs, TableData,
};
use crate::world::World;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Size of the organisation and of its activity; 1.0 is about 200 people and 40
    /// computers. The population never shrinks below 80 people and 32 workstations, so the
    /// planted incidents are always present.
    pub scale: f64,
    /// Number of days of activity, ending at `end`.
    pub days: u32,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// End of the generated window (exclusive). Fixed by default so output is deterministic.
    pub end: DateTime<Utc>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scale: 1.0,
            days: 21,
            seed: 42,
            end: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .expect("invariant: 2026-11-01T00:00:00Z is a valid, unambiguous UTC time"),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Table name and number of rows written, in the order the tables were written.
    pub tables: Vec<(String, usize)>,
}

/// Writes (overwriting if present) the demo tables into `workspace_url` (an object-store URL
/// of the workspace folder, e.g. `file:///abs/lake/demo` — each table goes in
/// `<workspace_url>/<TableName>`), each table as one atomic Delta commit.
pub async fn generate(
    workspace_url: &Url,
    storage_options: &HashMap<String, String>,
    opts: &DemoOptions,
) -> Result<DemoSummary, DemoError> {
    validate(opts)?;
    let started = std::time::Instant::now();
    let owned = opts.clone();
    let tables = tokio::task::spawn_blocking(move || build_tables(&owned))
        .await
        .map_err(|source| DemoError::GenerateTask { source })??;
    tracing::debug!(elapsed = ?started.elapsed(), "demo data built");

    let mut summary = DemoSummary {
        tables: Vec::with_capacity(tables.len()),
    };
    for table in tables {
        let url = table_url(workspace_url, table.name)?;
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(&path)
                    .map_err(|source| DemoError::CreateDirectory { path, source })?;
            }
        }
        let delta = DeltaTable::try_from_url_with_storage_options(url, storage_options.clone())
            .await
            .map_err(|source| DemoError::OpenTable {
                table: table.name.to_string(),
                source,
            })?;
        delta
            .write(table.batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_table_name(table.name)
            .with_description(table.description)
            .await
            .map_err(|source| DemoError::WriteTable {
                table: table.name.to_string(),
                source,
            })?;
        tracing::info!(table = table.name, rows = table.rows, "demo table written");
        summary.tables.push((table.name.to_string(), table.rows));
    }
    tracing::info!(elapsed = ?started.elapsed(), "demo workspace generated");
    Ok(summary)
}

fn validate(opts: &DemoOptions) -> Result<(), DemoError> {
    if !(opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= 100.0) {
        return Err(DemoError::InvalidOptions(format!(
            "scale must be in (0, 100], got {}",
            opts.scale
        )));
    }
    if opts.days == 0 || opts.days > 366 {
        return Err(DemoError::InvalidOptions(format!(
            "days must be in 1..=366, got {}",
            opts.days
        )));
    }
    Ok(())
}

fn table_url(workspace: &Url, table: &str) -> Result<Url, DemoError> {
    let mut base = workspace.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(table).map_err(|source| DemoError::TableUrl {
        table: table.to_string(),
        workspace: workspace.to_string(),
        source,
    })
}

/// Builds the world, simulates the window, plants the incidents and turns the rows into
/// the tables, in the order they are written.
pub(crate) fn build_tables(opts: &DemoOptions) -> Result<Vec<TableData>, DemoError> {
    let w = World::build(opts);
    let mut sim = Sim {
        w: &w,
        rng: Rng::new(opts.seed, 2),
        signins: Vec::new(),
        sec: Vec::new(),
        net: Vec::new(),
        audit: Vec::new(),
    };
    sim.run();
    sim.rng = Rng::new(opts.seed, 3);
    sim.incidents();
    let Sim {
        mut signins,
        mut sec,
        mut net,
        mut audit,
        ..
    } = sim;
    // Stable sorts: ties keep generation order, so the output is fully deterministic.
    signins.sort_by_key(|r| r.ts);
    sec.sort_by_key(|r| r.ts);
    net.sort_by_key(|r| r.ts);
    audit.sort_by_key(|r| r.ts);

    Ok(vec![
        identity_info(&w)?,
        signin_logs(&w, &signins)?,
        audit_logs(&audit)?,
        security_event(&w, &sec)?,
        device_network_events(&w, &net)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::{SPRAY_IP, TRAVEL_IP};
    use crate::test_util::{column, small, table};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    use std::collections::BTreeSet;

    fn dir_url(dir: &std::path::Path) -> Url {
        Url::from_directory_path(dir).expect("absolute temp dir")
    }

    /// All values of a column as read back from the Delta table.
    async fn read_column(url: &Url, name: &str) -> Vec<Option<String>> {
        let table = deltalake::open_table(url.clone())
            .await
            .expect("table opens");
        let (_, stream) = table.scan_table().with_columns([name]).await.expect("scan");
        let batches = deltalake::operations::collect_sendable_stream(stream)
            .await
            .expect("read");
        let mut out = Vec::new();
        for b in batches {
            let col = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("castable");
            let s = col.as_string::<i32>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
        }
        out
    }

    /// Order-independent checksum of a column.
    fn checksum(values: &[Option<String>]) -> u64 {
        values.iter().fold(0u64, |acc, v| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in v.as_deref().unwrap_or("\u{0}null").bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            acc.wrapping_add(h)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_writes_delta_tables_deterministically() {
        let opts = small();
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        // The workspace folder does not exist yet: generate must create it.
        let url_a = dir_url(&a.path().join("demo"));
        // No trailing slash on this one: tables still go inside the folder.
        let url_b = Url::from_file_path(b.path().join("demo")).expect("absolute temp dir");
        let none = HashMap::new();
        let sa = generate(&url_a, &none, &opts).await.expect("generate a");
        let sb = generate(&url_b, &none, &opts).await.expect("generate b");
        assert_eq!(sa, sb);
        let names: Vec<&str> = sa.tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "IdentityInfo",
                "SigninLogs",
                "AuditLogs",
                "SecurityEvent",
                "DeviceNetworkEvents"
            ]
        );

        for (name, rows) in &sa.tables {
            assert!(*rows > 0, "{name} has rows");
            let url = table_url(&url_a, name).expect("table url");
            let t = deltalake::open_table(url.clone()).await.expect("re-opens");
            assert_eq!(t.version(), Some(0), "{name} is one commit");
            let ts = read_column(&url, "TimeGenerated").await;
            assert_eq!(ts.len(), *rows, "{name} row count");
        }

        for (name, col) in [
            ("SigninLogs", "CorrelationId"),
            ("SecurityEvent", "CommandLine"),
            ("DeviceNetworkEvents", "LocalPort"),
        ] {
            let ca = read_column(&table_url(&url_a, name).expect("url"), col).await;
            let cb = read_column(&table_url(&url_b, name).expect("url"), col).await;
            assert_eq!(
                checksum(&ca),
                checksum(&cb),
                "{name}.{col} is deterministic"
            );
        }

        // The spray, as read back from the lake.
        let url = table_url(&url_a, "SigninLogs").expect("url");
        let ip = read_column(&url, "IPAddress").await;
        let upn = read_column(&url, "UserPrincipalName").await;
        let users: BTreeSet<_> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(SPRAY_IP))
            .map(|i| upn[i].clone())
            .collect();
        assert!(users.len() >= 40, "spray hits {} users", users.len());

        // A different seed changes the data; regenerating overwrites in one more commit.
        let other = generate(
            &url_a,
            &none,
            &DemoOptions {
                seed: 7,
                ..opts.clone()
            },
        )
        .await
        .expect("regenerate");
        assert_ne!(other, sa);
        let t = deltalake::open_table(table_url(&url_a, "SigninLogs").expect("url"))
            .await
            .expect("opens");
        assert_eq!(t.version(), Some(1));
        let rows = read_column(
            &table_url(&url_a, "SigninLogs").expect("url"),
            "TimeGenerated",
        )
        .await;
        assert_eq!(rows.len(), other.tables[1].1);
    }

    #[test]
    fn demo_rejects_bad_options() {
        assert!(validate(&DemoOptions {
            days: 0,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions {
            scale: f64::NAN,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions {
            scale: 0.0,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions::default()).is_ok());
        // Very short windows still hold every incident.
        let tables = build_tables(&DemoOptions { days: 1, ..small() }).expect("builds");
        let ip = column(table(&tables, "SigninLogs"), "IPAddress");
        assert!(ip.iter().any(|i| i.as_deref() == Some(SPRAY_IP)));
        assert!(ip.iter().any(|i| i.as_deref() == Some(TRAVEL_IP)));
    }

    /// Default size: row counts and wall time of the whole generate() (debug build).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_default_scale_size_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = dir_url(dir.path());
        let started = std::time::Instant::now();
        let summary = generate(&url, &HashMap::new(), &DemoOptions::default())
            .await
            .expect("generate");
        let elapsed = started.elapsed();
        let total: usize = summary.tables.iter().map(|(_, n)| n).sum();
        eprintln!("demo default scale: {summary:?}, total {total} rows in {elapsed:?}");
        assert!((100_000..=300_000).contains(&total), "total rows {total}");
    }
}
