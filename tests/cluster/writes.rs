//! Lake writes against a real cluster: a write commits exactly the rows its
//! query produced (property-tested over random multi-partition plans) or
//! fails with a coded error, in bounded time; and no write reaches outside
//! the lake.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tarn_tests::{demo_lake, error_code as code, query, Cluster};
use tonic::transport::Channel;

/// Longer than any of these writes takes, far shorter than "forever".
const WRITE_LIMIT: Duration = Duration::from_secs(60);

type Row = (Option<i64>, Option<String>);

/// A lake of the test's own (writes must not touch the shared demo lake),
/// with one demo table to join against.
fn private_lake() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(lake.join("demo"))?;
    tarn_tests::copy_dir(
        &demo_lake()?.join("demo").join("IdentityInfo"),
        &lake.join("demo").join("IdentityInfo"),
    )?;
    Ok((dir, lake))
}

/// The `(k, v)` rows of a result, sorted: tables are multisets.
fn sorted_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let k = arrow::compute::cast(b.column_by_name("k").expect("column k"), &DataType::Int64)
            .expect("k as i64");
        let v = arrow::compute::cast(b.column_by_name("v").expect("column v"), &DataType::Utf8)
            .expect("v as text");
        let k = k.as_any().downcast_ref::<Int64Array>().expect("i64");
        let v = v.as_any().downcast_ref::<StringArray>().expect("text");
        for i in 0..b.num_rows() {
            out.push((
                (!k.is_null(i)).then(|| k.value(i)),
                (!v.is_null(i)).then(|| v.value(i).to_string()),
            ));
        }
    }
    out.sort();
    out
}

fn count_of(batches: &[RecordBatch]) -> u64 {
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("a count row");
    let c = arrow::compute::cast(b.column(0), &DataType::UInt64).expect("count");
    c.as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .expect("u64")
        .value(0)
}

/// Runs a statement with the time bound every write (and read) must meet.
async fn write(
    c: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Result<Vec<RecordBatch>, tonic::Status>, String> {
    let start = std::time::Instant::now();
    let r = tokio::time::timeout(WRITE_LIMIT, query(c, sql))
        .await
        .map_err(|_| format!("the statement did not finish within {WRITE_LIMIT:?}: {sql}"));
    if std::env::var_os("TARN_WRITE_TRACE").is_some() {
        eprintln!("[{:>6} ms] {sql}", start.elapsed().as_millis());
    }
    r
}

#[tokio::test]
async fn unions_are_written_whole_and_inserts_return() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let mut c = cluster.flight_sql().await?;
    let ctas = "CREATE TABLE demo.Plain_SPRK AS SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4";
    let n = count_of(&write(&mut c, ctas).await.map_err(anyhow::Error::msg)??);
    assert_eq!(n, 4, "CTAS reports the rows of its query");
    let total = |b: &[RecordBatch]| tarn_tests::scalar_i64(b);
    assert_eq!(
        total(&query(&mut c, "SELECT count(*) FROM demo.Plain_SPRK").await?),
        4,
        "every row of the union is committed"
    );
    let insert = "INSERT INTO demo.Plain_SPRK SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7";
    let n = count_of(&write(&mut c, insert).await.map_err(anyhow::Error::msg)??);
    assert_eq!(n, 3);
    assert_eq!(
        total(&query(&mut c, "SELECT sum(x) FROM demo.Plain_SPRK").await?),
        28,
        "1 + … + 7, each once"
    );
    Ok(())
}

/// `INSERT … SELECT` matches the query's columns to the table's by
/// position (or by the column list), whatever the query reads from: a
/// `VALUES` list inside the query keeps its own types. Before, every
/// nested `VALUES` was typed by the table's columns, so a query that
/// reordered its columns failed casting text to a number.
#[tokio::test]
async fn inserts_match_columns_by_position_through_nested_values() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let mut c = cluster.flight_sql().await?;
    let ok = |r: Result<Result<Vec<RecordBatch>, tonic::Status>, String>| -> anyhow::Result<u64> {
        Ok(count_of(&r.map_err(anyhow::Error::msg)??))
    };
    ok(write(
        &mut c,
        "CREATE TABLE demo.Cols_SPRK PARTITION BY (k) AS \
         SELECT CAST('a' AS VARCHAR) AS v, CAST(1 AS BIGINT) AS k",
    )
    .await)?;
    for (sql, rows) in [
        // Reordered columns over VALUES, through DISTINCT and GROUP BY.
        ("INSERT INTO demo.Cols_SPRK SELECT column2, column1 FROM (VALUES (2, 'b')) t", 1),
        ("INSERT INTO demo.Cols_SPRK SELECT v, k FROM (SELECT DISTINCT column1 AS k, column2 AS v FROM (VALUES (3, 'c'), (3, 'c')) t) d", 1),
        ("INSERT INTO demo.Cols_SPRK SELECT max(v), k FROM (SELECT column1 AS k, column2 AS v FROM (VALUES (4, 'd'), (4, 'e')) t) g GROUP BY k", 1),
        // A column list in another order than the table's.
        ("INSERT INTO demo.Cols_SPRK (k, v) SELECT column1, column2 FROM (VALUES (5, 'f')) t", 1),
        // VALUES at the top is typed by the listed columns.
        ("INSERT INTO demo.Cols_SPRK (k, v) VALUES (6, 'g')", 1),
        ("INSERT INTO demo.Cols_SPRK VALUES ('h', 7)", 1),
    ] {
        assert_eq!(ok(write(&mut c, sql).await).map_err(|e| anyhow::anyhow!("{sql}: {e}"))?, rows, "{sql}");
    }
    let batches = query(&mut c, "SELECT k, v FROM demo.Cols_SPRK").await?;
    let got = sorted_rows(&batches);
    let want: Vec<Row> = [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "e"),
        (5, "f"),
        (6, "g"),
        (7, "h"),
    ]
    .into_iter()
    .map(|(k, v)| (Some(k), Some(v.to_string())))
    .collect();
    assert_eq!(got, want);

    // Wrong shapes are refused before anything runs, with a code.
    for (sql, expected) in [
        ("INSERT INTO demo.Cols_SPRK SELECT 1", "2401"),
        ("INSERT INTO demo.Cols_SPRK (k, k) SELECT 1, 2", "2802"),
        ("INSERT INTO demo.Cols_SPRK (nope) SELECT 1", "2401"),
        // `v` was created NOT NULL (from a literal): leaving it out is
        // refused by the write with its own code, not a generic failure.
        ("INSERT INTO demo.Cols_SPRK (k) SELECT 8", "2403"),
    ] {
        let err = write(&mut c, sql)
            .await
            .map_err(anyhow::Error::msg)?
            .expect_err(sql);
        assert_eq!(
            code(&err).as_deref(),
            Some(expected),
            "{sql}: {}",
            err.message()
        );
    }
    assert_eq!(
        sorted_rows(&query(&mut c, "SELECT k, v FROM demo.Cols_SPRK").await?),
        want,
        "refused inserts wrote nothing"
    );
    Ok(())
}

// ---------------------------------------------------------------------
// The property: random multi-partition plans written every way.

/// A query producing `k BIGINT, v VARCHAR` rows.
#[derive(Debug, Clone)]
enum Q {
    /// One row, from a placeholder (no FROM).
    Lit(i64, u8),
    /// `VALUES` rows (one in-memory partition).
    Values(Vec<(i64, u8)>),
    /// Rows of a demo table (a file scan, split over partitions).
    Identity(u8),
    /// No rows.
    Empty,
    Union(Vec<Q>),
    GroupBy(Box<Q>),
    Distinct(Box<Q>),
    OrderBy(Box<Q>),
    Filter(Box<Q>),
    Join(Box<Q>, Box<Q>),
}

impl Q {
    fn sql(&self) -> String {
        match self {
            Q::Lit(k, v) => {
                format!("SELECT CAST({k} AS BIGINT) AS k, CAST('v{v}' AS VARCHAR) AS v")
            }
            Q::Values(rows) => {
                let rows: Vec<String> =
                    rows.iter().map(|(k, v)| format!("({k}, 'v{v}')")).collect();
                format!(
                    "SELECT CAST(column1 AS BIGINT) AS k, CAST(column2 AS VARCHAR) AS v FROM (VALUES {}) t",
                    rows.join(", ")
                )
            }
            Q::Identity(r) => format!(
                "SELECT CAST(length(AccountUPN) AS BIGINT) AS k, \
                 CAST('d' || CAST(length(Department) AS VARCHAR) AS VARCHAR) AS v \
                 FROM demo.IdentityInfo WHERE length(AccountUPN) % 5 = {}",
                r % 5
            ),
            Q::Empty => {
                "SELECT CAST(1 AS BIGINT) AS k, CAST('x' AS VARCHAR) AS v WHERE false".into()
            }
            Q::Union(parts) => parts
                .iter()
                .map(|p| format!("SELECT k, v FROM ({}) u", p.sql()))
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
            Q::GroupBy(q) => format!("SELECT k, max(v) AS v FROM ({}) g GROUP BY k", q.sql()),
            Q::Distinct(q) => format!("SELECT DISTINCT k, v FROM ({}) d", q.sql()),
            Q::OrderBy(q) => format!("SELECT k, v FROM ({}) o ORDER BY k DESC, v", q.sql()),
            Q::Filter(q) => format!("SELECT k, v FROM ({}) f WHERE k % 2 = 0", q.sql()),
            Q::Join(a, b) => format!(
                "SELECT a.k AS k, b.v AS v FROM ({}) a JOIN ({}) b ON a.k = b.k",
                a.sql(),
                b.sql()
            ),
        }
    }
}

fn query_strategy() -> impl Strategy<Value = Q> {
    let leaf = prop_oneof![
        3 => (-5i64..20, 0u8..4).prop_map(|(k, v)| Q::Lit(k, v)),
        2 => prop::collection::vec((-5i64..20, 0u8..4), 1..6).prop_map(Q::Values),
        2 => (0u8..5).prop_map(Q::Identity),
        1 => Just(Q::Empty),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 2..5).prop_map(Q::Union),
            1 => inner.clone().prop_map(|q| Q::GroupBy(Box::new(q))),
            1 => inner.clone().prop_map(|q| Q::Distinct(Box::new(q))),
            1 => inner.clone().prop_map(|q| Q::OrderBy(Box::new(q))),
            1 => inner.clone().prop_map(|q| Q::Filter(Box::new(q))),
            1 => (inner.clone(), inner).prop_map(|(a, b)| Q::Join(Box::new(a), Box::new(b))),
        ]
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Insert,
    Overwrite,
}

#[derive(Debug, Clone)]
struct Case {
    /// `PARTITION BY` of the new table.
    partition: Option<&'static str>,
    create: Q,
    then: Vec<(Op, Q)>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(None), Just(Some("k")), Just(Some("v"))],
        query_strategy(),
        prop::collection::vec(
            (
                prop_oneof![2 => Just(Op::Insert), 1 => Just(Op::Overwrite)],
                query_strategy(),
            ),
            1..3,
        ),
    )
        .prop_map(|(partition, create, then)| Case {
            partition,
            create,
            then,
        })
}

/// The table's columns in stored order (partition columns last).
fn columns(partition: Option<&str>) -> &'static str {
    match partition {
        Some("k") => "v, k",
        _ => "k, v",
    }
}

static TABLES: AtomicUsize = AtomicUsize::new(0);

async fn check_case(
    c: &mut FlightSqlServiceClient<Channel>,
    case: &Case,
) -> Result<(), TestCaseError> {
    let fail = |m: String| TestCaseError::fail(m);
    let table = format!("demo.P{}_SPRK", TABLES.fetch_add(1, Ordering::Relaxed));
    let mut content: Option<Vec<Row>> = None;
    let steps =
        std::iter::once((None, &case.create)).chain(case.then.iter().map(|(op, q)| (Some(*op), q)));
    for (op, q) in steps {
        let select = format!("SELECT {} FROM ({}) s", columns(case.partition), q.sql());
        let answer = sorted_rows(
            &write(c, &select)
                .await
                .map_err(fail)?
                .map_err(|e| fail(format!("the query itself failed: {e}\n{select}")))?,
        );
        let sql = match (op, case.partition) {
            (None, Some(p)) => format!("CREATE TABLE {table} PARTITION BY ({p}) AS {select}"),
            (None, None) => format!("CREATE TABLE {table} AS {select}"),
            (Some(Op::Insert), _) => format!("INSERT INTO {table} {select}"),
            (Some(Op::Overwrite), _) => format!("INSERT OVERWRITE {table} {select}"),
        };
        match write(c, &sql).await.map_err(fail)? {
            Ok(result) => {
                let n = count_of(&result);
                prop_assert_eq!(n as usize, answer.len(), "reported count of {}", sql);
                let mut expected = match op {
                    Some(Op::Insert) => content.clone().unwrap_or_default(),
                    _ => Vec::new(),
                };
                expected.extend(answer);
                expected.sort();
                let now = sorted_rows(
                    &write(c, &format!("SELECT k, v FROM {table}"))
                        .await
                        .map_err(fail)?
                        .map_err(|e| fail(format!("reading {table} back: {e}")))?,
                );
                prop_assert_eq!(&now, &expected, "content after {}", sql);
                content = Some(now);
            }
            Err(status) => {
                // Every generated write is valid (same columns, types and
                // nullability as its table), so any refusal is a bug; say
                // whether it was at least coded and left the table alone.
                let unchanged = match &content {
                    Some(before) => {
                        let now = sorted_rows(
                            &write(c, &format!("SELECT k, v FROM {table}"))
                                .await
                                .map_err(fail)?
                                .map_err(|e| fail(format!("reading {table} back: {e}")))?,
                        );
                        &now == before
                    }
                    None => true,
                };
                return Err(fail(format!(
                    "a valid write failed (code {:?}, table unchanged: {unchanged}): {sql}: {}",
                    code(&status),
                    status.message()
                )));
            }
        }
    }
    Ok(())
}

/// `TARN_WRITE_PROPTEST_CASES` sets the number of cases (default 24, about
/// 15 s in a debug build); `TARN_WRITE_PROPTEST_SEED` (a number) replays a
/// run, and the seed of each run is printed. Each statement is bounded
/// (`WRITE_LIMIT`), and so is shrinking a failure.
#[test]
fn every_write_commits_exactly_its_query() -> anyhow::Result<()> {
    let cases: u32 = std::env::var("TARN_WRITE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let rt = tokio::runtime::Runtime::new()?;
    let (_dir, lake) = private_lake()?;
    let cluster = rt.block_on(Cluster::start_with(&lake, &[], &[]))?;
    // The runner takes a `Fn`; cases run one at a time.
    let c = std::cell::RefCell::new(rt.block_on(cluster.flight_sql())?);
    let seed: u64 = std::env::var("TARN_WRITE_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand_seed);
    eprintln!("write property: {cases} cases, TARN_WRITE_PROPTEST_SEED={seed}");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            // Shrinking re-runs cluster writes: bounded in steps and time.
            max_shrink_iters: 32,
            max_shrink_time: 120_000,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    );
    let result = runner.run(&case_strategy(), |case| {
        rt.block_on(check_case(&mut c.borrow_mut(), &case))
    });
    if let Err(e) = result {
        anyhow::bail!("{e}\ncluster log:\n{}", cluster.log_tail());
    }
    Ok(())
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

// ---------------------------------------------------------------------
// Writes stay in the lake.

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn refused_2206(c: &mut FlightSqlServiceClient<Channel>, sql: &str) {
    let err = write(c, sql).await.expect("bounded").expect_err(sql);
    assert_eq!(
        code(&err).as_deref(),
        Some("2206"),
        "{sql}: {}",
        err.message()
    );
}

#[tokio::test]
async fn writes_through_symlinks_to_outside_are_refused_and_write_nothing() -> anyhow::Result<()> {
    let (dir, lake) = private_lake()?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let mut c = cluster.flight_sql().await?;

    // A new table's folder planted as a symlink out of the lake.
    std::os::unix::fs::symlink(&outside, lake.join("demo").join("Evil_SPRK"))?;
    refused_2206(
        &mut c,
        "CREATE TABLE demo.Evil_SPRK AS SELECT 1 AS x UNION ALL SELECT 2",
    )
    .await;
    refused_2206(
        &mut c,
        "CREATE TABLE demo.Evil_SPRK PARTITION BY (x) AS SELECT 1 AS x, 2 AS y",
    )
    .await;

    // An existing table moved out of the lake, a symlink left behind.
    write(&mut c, "CREATE TABLE demo.Moved_SPRK AS SELECT 1 AS x")
        .await
        .map_err(anyhow::Error::msg)??;
    let moved = dir.path().join("moved");
    std::fs::rename(lake.join("demo").join("Moved_SPRK"), &moved)?;
    std::os::unix::fs::symlink(&moved, lake.join("demo").join("Moved_SPRK"))?;
    let before = files_under(&moved);
    refused_2206(&mut c, "INSERT INTO demo.Moved_SPRK SELECT 2").await;
    refused_2206(&mut c, "INSERT OVERWRITE demo.Moved_SPRK SELECT 3").await;

    // A real table whose write folders are planted symlinks.
    write(
        &mut c,
        "CREATE TABLE demo.Real_SPRK PARTITION BY (p) AS SELECT 1 AS x, 'a' AS p",
    )
    .await
    .map_err(anyhow::Error::msg)??;
    let real = lake.join("demo").join("Real_SPRK");
    // The first write left its (empty) manifest folder behind.
    let _ = std::fs::remove_dir_all(real.join("_tarn_txn"));
    std::os::unix::fs::symlink(&outside, real.join("_tarn_txn"))?;
    refused_2206(&mut c, "INSERT INTO demo.Real_SPRK SELECT 2 AS x, 'a' AS p").await;
    std::fs::remove_file(real.join("_tarn_txn"))?;
    std::fs::remove_dir_all(real.join("p=a"))?;
    std::os::unix::fs::symlink(&outside, real.join("p=a"))?;
    refused_2206(&mut c, "INSERT INTO demo.Real_SPRK SELECT 2 AS x, 'a' AS p").await;

    assert_eq!(
        files_under(&outside),
        Vec::<PathBuf>::new(),
        "nothing written outside"
    );
    assert_eq!(files_under(&moved), before, "the moved table is untouched");
    Ok(())
}

#[tokio::test]
async fn one_unreadable_table_leaves_the_workspace_listable() -> anyhow::Result<()> {
    let (dir, lake) = private_lake()?;
    // A table whose log is garbage, and one that resolves outside the lake.
    let broken = lake.join("demo").join("Broken_SPRK").join("_delta_log");
    std::fs::create_dir_all(&broken)?;
    std::fs::write(
        broken.join("00000000000000000000.json"),
        b"{not json at all",
    )?;
    let outside = dir.path().join("elsewhere");
    tarn_tests::copy_dir(&lake.join("demo").join("IdentityInfo"), &outside)?;
    std::os::unix::fs::symlink(&outside, lake.join("demo").join("Escape_SPRK"))?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    let mut c = cluster.flight_sql().await?;

    for sql in [
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'demo'",
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'demo'",
        "SHOW TABLES",
    ] {
        let batches = query(&mut c, sql)
            .await
            .map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
        let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        assert!(text.contains("IdentityInfo"), "{sql} lists the readable table:\n{text}");
    }
    let info = c
        .get_tables(arrow_flight::sql::CommandGetTables {
            catalog: Some("tarn".into()),
            db_schema_filter_pattern: Some("demo".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await?;
    let batches = tarn_tests::fetch(&mut c, info).await?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    assert!(
        text.contains("IdentityInfo"),
        "GetTables lists the readable table"
    );

    // Naming the bad tables still answers with a coded error.
    for (sql, expected) in [
        ("SELECT * FROM demo.Broken_SPRK", None),
        ("SELECT * FROM demo.Escape_SPRK", Some("2206")),
    ] {
        let err = query(&mut c, sql).await.expect_err(sql);
        let got = code(&err);
        assert!(got.is_some(), "{sql}: coded: {}", err.message());
        if let Some(e) = expected {
            assert_eq!(got.as_deref(), Some(e), "{sql}: {}", err.message());
        }
    }
    Ok(())
}

/// Two clients overwrite one table at once. Whichever commits second was
/// planned against the version the first one replaced, so it is refused
/// with 2605 and commits nothing: the table holds exactly the winner's
/// rows, never a mix, and the loser's staged files are gone. If a round's
/// writes happen not to overlap (both commit), it is run again; a test
/// that never sees the race fails rather than pass without proving it.
#[tokio::test]
async fn concurrent_overwrites_conflict_with_2605_and_mix_nothing() -> anyhow::Result<()> {
    let (_dir, lake) = private_lake()?;
    let cluster = Cluster::start_with(&lake, &[], &[]).await?;
    for round in 0..3 {
        let table = format!("Race{round}_SPRK");
        let mut slow_client = cluster.flight_sql().await?;
        let mut fast_client = cluster.flight_sql().await?;
        write(
            &mut slow_client,
            &format!("CREATE TABLE demo.{table} AS SELECT 0 AS gen, 0 AS n"),
        )
        .await
        .map_err(anyhow::Error::msg)??;
        let txn = lake.join("demo").join(&table).join("_tarn_txn");
        let slow_sql = format!(
            "INSERT OVERWRITE demo.{table} \
             SELECT 1 AS gen, value AS n FROM generate_series(1, 1000000)"
        );
        let slow = tokio::spawn(async move { write(&mut slow_client, &slow_sql).await });
        // The slow write is planned and running (its tasks staged files)
        // before the fast one starts.
        let deadline = std::time::Instant::now() + WRITE_LIMIT;
        while files_under(&txn).is_empty() && !slow.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the slow overwrite never staged files"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fast = write(
            &mut fast_client,
            &format!("INSERT OVERWRITE demo.{table} SELECT 2 AS gen, 2 AS n"),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let slow = slow.await?.map_err(anyhow::Error::msg)?;

        let mut c = cluster.flight_sql().await?;
        let got = sorted_rows(
            &query(
                &mut c,
                &format!(
                    "SELECT count(*) AS k, CAST(min(gen) * 10 + max(gen) AS VARCHAR) AS v \
                     FROM demo.{table}"
                ),
            )
            .await?,
        );
        let (winner, loser) = match (&slow, &fast) {
            (Ok(_), Ok(_)) => {
                // No overlap: the later overwrite replaced the earlier one.
                assert!(
                    got == vec![(Some(1), Some("22".into()))]
                        || got == vec![(Some(1_000_000), Some("11".into()))],
                    "round {round}: two overwrites in a row leave one generation: {got:?}"
                );
                continue;
            }
            (Ok(_), Err(e)) => (1, e),
            (Err(e), Ok(_)) => (2, e),
            (Err(a), Err(b)) => panic!("round {round}: both overwrites failed: {a:?} / {b:?}"),
        };
        assert_eq!(code(loser).as_deref(), Some("2605"), "{}", loser.message());
        assert_eq!(loser.code(), tonic::Code::Aborted, "{}", loser.message());
        assert!(
            loser.message().contains(&format!("demo.{table}")),
            "{}",
            loser.message()
        );
        let expected = if winner == 1 {
            vec![(Some(1_000_000), Some("11".to_string()))]
        } else {
            vec![(Some(1), Some("22".to_string()))]
        };
        assert_eq!(got, expected, "only the winner's rows, one generation");
        assert!(
            files_under(&txn).is_empty(),
            "the loser's staged files are cleaned up: {:?}",
            files_under(&txn)
        );
        return Ok(());
    }
    panic!("in three rounds the two overwrites never overlapped; the conflict was not tested")
}
