//! Stock Ballista, as `SessionContext::standalone()` sets it up: Ballista's
//! own standalone scheduler (pull-staged, default policy) and one executor
//! with a vCore per core, in this process, with Ballista's default settings.
//! It runs TPC-H query files over Parquet folders and prints per-query
//! times as JSON, so `bench/tpch.py --ballista` can put the engine Tarn is
//! built on beside Tarn, in the same run, over the same files.
//!
//! Nothing of Tarn is used here: no lease policy, no direct runs, no lake.

use std::path::PathBuf;
use std::time::Instant;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::BallistaCodec;
use clap::Parser;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

/// TPC-H through stock Ballista standalone.
#[derive(Parser, Debug)]
struct Args {
    /// Folder with one sub-folder of Parquet files per TPC-H table.
    #[arg(long)]
    data: PathBuf,
    /// Folder with q01.sql … q22.sql.
    #[arg(long)]
    queries: PathBuf,
    /// Query numbers, comma separated (default: 1 to 22).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Measured runs per query.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// `datafusion.execution.target_partitions` (default: Ballista's own).
    #[arg(long)]
    target_partitions: Option<usize>,
    /// Executor vCores (default: the machine's cores, as standalone does).
    #[arg(long)]
    vcores: Option<usize>,
}

const TABLES: &[&str] = &[
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let vcores = args.vcores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let addr = ballista_scheduler::standalone::new_standalone_scheduler().await?;
    let scheduler =
        SchedulerGrpcClient::connect(format!("http://localhost:{}", addr.port())).await?;
    ballista_executor::new_standalone_executor(scheduler, vcores, BallistaCodec::default()).await?;

    let mut config = SessionConfig::new_with_ballista();
    if let Some(n) = args.target_partitions {
        config = config.with_target_partitions(n);
    }
    let target_partitions = config.target_partitions();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build()
        .upgrade_for_ballista(format!("df://localhost:{}", addr.port()))?;
    let ctx = SessionContext::new_with_state(state);
    for t in TABLES {
        let dir = args.data.join(t);
        let dir = format!("{}/", dir.display());
        ctx.register_parquet(*t, &dir, ParquetReadOptions::default())
            .await?;
    }

    let numbers: Vec<u32> = if args.only.is_empty() {
        (1..=22).collect()
    } else {
        args.only.clone()
    };
    let mut results = serde_json::Map::new();
    for n in numbers {
        let name = format!("q{n:02}");
        let sql = std::fs::read_to_string(args.queries.join(format!("{name}.sql")))?;
        let mut times = Vec::new();
        let mut rows = 0usize;
        let mut error = None;
        for i in 0..args.warmup + args.runs {
            let start = Instant::now();
            match run(&ctx, &sql).await {
                Ok(r) => rows = r,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
            if i >= args.warmup {
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        eprintln!(
            "  {name}  {}",
            times
                .iter()
                .map(|t| format!("{t:.1} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut entry = serde_json::Map::new();
        entry.insert("times_ms".into(), serde_json::json!(times));
        entry.insert("rows".into(), serde_json::json!(rows));
        if let Some(e) = error {
            entry.insert("error".into(), serde_json::json!(e));
        }
        results.insert(name, serde_json::Value::Object(entry));
    }
    let out = serde_json::json!({
        "engine": format!("Ballista {} standalone (stock)", ballista_core::BALLISTA_VERSION),
        "vcores": vcores,
        "target_partitions": target_partitions,
        "queries": results,
    });
    println!("{}", serde_json::to_string(&out)?);
    // The standalone scheduler and executor have no shutdown of their own.
    std::process::exit(0);
}

/// Runs one query file (one statement; comments and a trailing `;` are
/// fine) and returns its row count.
async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<usize> {
    let statement = sql.trim().trim_end_matches(';');
    let batches = ctx.sql(statement).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}
