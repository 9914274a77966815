//! The work runs on executors as Ballista stages, not in the gateway.

use std::collections::HashMap;

use tarn_proto::{GetClusterInfoRequest, Pool};
use tarn_tests::{demo_lake, query, rows, Cluster};

#[tokio::test]
async fn joins_run_as_multi_stage_jobs_on_executor_processes() -> anyhow::Result<()> {
    // The demo lake is small enough for a direct run; without the
    // small-input rule the join needs a shuffle, and with execution =
    // distributed that makes it a Ballista job.
    let cluster = Cluster::start_with(
        &demo_lake()?,
        &[],
        &[
            ("TARN_GATEWAY__DIRECT_SMALL_INPUT_BYTES", "0"),
            ("TARN_GATEWAY__EXECUTION", "distributed"),
        ],
    )
    .await?;
    let mut c = cluster.flight_sql().await?;
    let mut coord = cluster.coordinator().await?;

    let info = coord
        .get_cluster_info(GetClusterInfoRequest {
            header: Some(tarn_proto::header()),
        })
        .await?
        .into_inner();
    let pools: HashMap<i32, u32> = info.executors.iter().map(|e| (e.pool, e.vcores)).collect();
    assert_eq!(
        info.executors.len(),
        2,
        "one interactive and one job executor: {info:?}"
    );
    assert!(
        pools.contains_key(&(Pool::Interactive as i32)) && pools.contains_key(&(Pool::Job as i32))
    );
    assert!(info
        .executors
        .iter()
        .all(|e| e.vcores > 0 && e.scheduler_alive));
    let interactive = info
        .pools
        .iter()
        .find(|p| p.name == "interactive")
        .expect("interactive pool");
    assert_eq!(interactive.configured_vcores, 760);
    assert_eq!(
        interactive.capacity_vcores,
        interactive.offered_vcores.min(760)
    );

    let batches = query(
        &mut c,
        "SELECT s.Location, i.Department, COUNT(*) AS n \
         FROM SigninLogs s JOIN IdentityInfo i ON s.UserPrincipalName = i.AccountUPN \
         GROUP BY s.Location, i.Department ORDER BY n DESC",
    )
    .await?;
    assert!(rows(&batches) > 1);

    let jobs = cluster.jobs().await?;
    let job = jobs
        .iter()
        .filter(|j| j.status == "successful")
        .max_by_key(|j| j.stage_count)
        .expect("the join ran as a Ballista job");
    assert!(
        job.stage_count > 1,
        "a join + aggregate has several stages: {job:?}"
    );
    assert!(!job.tasks.is_empty());
    let executor_pids: HashMap<&str, u32> = info
        .executors
        .iter()
        .map(|e| (e.executor_id.as_str(), e.pid))
        .collect();
    for t in &job.tasks {
        let pid = executor_pids
            .get(t.executor_id.as_str())
            .unwrap_or_else(|| panic!("task ran on a registered executor: {t:?}"));
        assert_ne!(
            *pid,
            cluster.pid(),
            "tasks run in executor processes, not the supervisor"
        );
        assert_ne!(*pid, std::process::id());
    }
    Ok(())
}
