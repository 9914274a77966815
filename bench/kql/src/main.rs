//! KQL benchmarks: planning time over the conformance corpus
//! (`tests/kql/*.toml`), and KQL against SQL end to end, for the hunting
//! queries on the demo lake and the TPC-H-like queries of
//! `bench/kql/tpch.toml` on a TPC-H lake.
//!
//! Both halves of a pair run through one in-process session
//! (`tarn_gateway::local`: the gateway's own planning and checks, then
//! DataFusion), so the only difference between them is the plan each
//! language makes. Runs alternate between the two halves.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;
use tarn_common::roles::Grants;
use tarn_gateway::local::LocalSession;
use tarn_gateway::session::Language;
use tarn_lake::Lake;

#[derive(Parser, Debug)]
#[command(about = "KQL planning time and KQL against SQL end to end")]
struct Args {
    /// A lake holding the demo workspace (`tarn demo --lake DIR`).
    #[arg(long)]
    lake: PathBuf,
    /// The conformance corpus.
    #[arg(long, default_value = "tests/kql")]
    cases: PathBuf,
    /// A lake holding the `tpch` workspace (bench/tpch.py makes one).
    #[arg(long)]
    tpch_lake: Option<PathBuf>,
    /// The TPC-H-like pairs.
    #[arg(long, default_value = "bench/kql/tpch.toml")]
    tpch_cases: PathBuf,
    /// Timed plannings per query.
    #[arg(long, default_value_t = 30)]
    plan_runs: usize,
    /// Timed runs per half of each end-to-end pair.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Partitions a session plans with (its vCores).
    #[arg(long, default_value_t = 2)]
    partitions: usize,
    /// Where to write the results as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    kql: String,
    sql: Option<String>,
    error: Option<toml::Value>,
}

/// The demo's end: `now()` in every KQL query, as in the corpus.
const QUERY_NOW: &str = "set query_now = datetime(2026-11-01T00:00:00Z);";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load(path: &Path) -> anyhow::Result<Vec<(String, Case)>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    for f in files {
        let stem = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let file: CaseFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        for c in file.cases {
            out.push((format!("{stem}/{}", c.name), c));
        }
    }
    Ok(out)
}

async fn session(lake: &Path, workspace: &str, partitions: usize) -> anyhow::Result<LocalSession> {
    let root = tarn_lake::parse_root(&lake.to_string_lossy())?;
    let lake = Lake::open(root)?;
    let s = LocalSession::new(
        lake,
        "bench",
        Grants::owner_everywhere(),
        workspace,
        partitions,
    )?;
    s.run_kql(QUERY_NOW).await?;
    Ok(s)
}

/// Planning time of every corpus query that plans, KQL and its SQL.
async fn planning(
    s: &LocalSession,
    cases: &[(String, Case)],
    runs: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut kql = Vec::new();
    let mut parse = Vec::new();
    let mut sql = Vec::new();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    for (name, c) in cases {
        if c.error.is_some() || s.plan(&c.kql, Language::Kql).await.is_err() {
            continue;
        }
        for _ in 0..3 {
            s.plan(&c.kql, Language::Kql).await?;
        }
        let mut k = Vec::with_capacity(runs);
        let mut p = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let parsed = tarn_kql::parse(&c.kql);
            p.push(t.elapsed());
            anyhow::ensure!(parsed.is_ok(), "{name} planned but does not parse");
            let t = Instant::now();
            s.plan(&c.kql, Language::Kql).await?;
            k.push(t.elapsed());
        }
        let km = median(k);
        slowest.push((km, name.clone()));
        kql.push(km);
        parse.push(median(p));
        if let Some(q) = &c.sql {
            if s.plan(q, Language::Sql).await.is_ok() {
                let mut v = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let t = Instant::now();
                    s.plan(q, Language::Sql).await?;
                    v.push(t.elapsed());
                }
                sql.push(median(v));
            }
        }
    }
    kql.sort();
    parse.sort();
    sql.sort();
    slowest.sort();
    slowest.reverse();
    let summary = |v: &[Duration]| {
        serde_json::json!({
            "queries": v.len(),
            "p50_ms": ms(percentile(v, 50.0)),
            "p99_ms": ms(percentile(v, 99.0)),
            "max_ms": ms(*v.last().unwrap_or(&Duration::ZERO)),
        })
    };
    println!(
        "planning over {} corpus queries (median of {runs} per query):\n  KQL parse only      p50 {:.3} ms  p99 {:.3} ms\n  KQL parse + plan    p50 {:.3} ms  p99 {:.3} ms\n  SQL parse + plan    p50 {:.3} ms  p99 {:.3} ms  ({} queries)",
        kql.len(),
        ms(percentile(&parse, 50.0)),
        ms(percentile(&parse, 99.0)),
        ms(percentile(&kql, 50.0)),
        ms(percentile(&kql, 99.0)),
        ms(percentile(&sql, 50.0)),
        ms(percentile(&sql, 99.0)),
        sql.len(),
    );
    println!("  slowest KQL plans:");
    for (d, n) in slowest.iter().take(5) {
        println!("    {:.3} ms  {n}", ms(*d));
    }
    Ok(serde_json::json!({
        "kql_parse": summary(&parse),
        "kql_plan": summary(&kql),
        "sql_plan": summary(&sql),
        "slowest": slowest.iter().take(5).map(|(d, n)| serde_json::json!({"case": n, "ms": ms(*d)})).collect::<Vec<_>>(),
    }))
}

/// KQL and SQL of each pair run alternately; medians compared.
async fn end_to_end(
    s: &LocalSession,
    cases: &[(String, Case)],
    runs: usize,
    label: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut rows = Vec::new();
    let (mut total_k, mut total_s) = (Duration::ZERO, Duration::ZERO);
    println!("{label}: KQL against SQL, median of {runs} alternating runs each");
    for (name, c) in cases {
        let Some(sql) = &c.sql else { continue };
        if c.error.is_some() {
            continue;
        }
        // One warm-up of each (the lake's snapshots, the OS cache).
        let (_, kb) = s
            .run_kql(&c.kql)
            .await
            .with_context(|| format!("{name} (KQL)"))?;
        let (_, sb) = s.run(sql).await.with_context(|| format!("{name} (SQL)"))?;
        let krows: usize = kb.iter().map(|b| b.num_rows()).sum();
        let srows: usize = sb.iter().map(|b| b.num_rows()).sum();
        let mut k = Vec::new();
        let mut q = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            s.run_kql(&c.kql).await?;
            k.push(t.elapsed());
            let t = Instant::now();
            s.run(sql).await?;
            q.push(t.elapsed());
        }
        let (km, sm) = (median(k), median(q));
        total_k += km;
        total_s += sm;
        let ratio = km.as_secs_f64() / sm.as_secs_f64();
        println!(
            "  {name:<60} KQL {:>9.2} ms  SQL {:>9.2} ms  {ratio:.3}x  ({krows} / {srows} rows)",
            ms(km),
            ms(sm)
        );
        rows.push(serde_json::json!({"case": name, "kql_ms": ms(km), "sql_ms": ms(sm), "ratio": ratio, "rows": [krows, srows]}));
    }
    let ratio = total_k.as_secs_f64() / total_s.as_secs_f64().max(1e-9);
    println!(
        "  {:<60} KQL {:>9.2} ms  SQL {:>9.2} ms  {ratio:.3}x",
        "sum of medians",
        ms(total_k),
        ms(total_s)
    );
    Ok(
        serde_json::json!({"queries": rows, "kql_ms": ms(total_k), "sql_ms": ms(total_s), "ratio": ratio}),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus = load(&args.cases)?;
    let demo = session(&args.lake, "demo", args.partitions).await?;
    let planning = planning(&demo, &corpus, args.plan_runs).await?;
    let hunting: Vec<(String, Case)> = corpus
        .into_iter()
        .filter(|(n, _)| n.starts_with("hunting/"))
        .collect();
    let hunting = end_to_end(&demo, &hunting, args.runs, "hunting queries (demo lake)").await?;
    let tpch = match &args.tpch_lake {
        Some(lake) => {
            let s = session(lake, "tpch", args.partitions).await?;
            let pairs = load(&args.tpch_cases)?;
            Some(end_to_end(&s, &pairs, args.runs, "TPC-H-like queries (tpch lake)").await?)
        }
        None => None,
    };
    if let Some(out) = &args.out {
        let v = serde_json::json!({"planning": planning, "hunting": hunting, "tpch": tpch});
        std::fs::write(out, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
