//! Executors as Tarn knows them: pool label, vCores, liveness.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tarn_proto::{ExecutorInfo, Pool, PoolInfo};

#[derive(Debug, Clone)]
struct Entry {
    info: ExecutorInfo,
    seen: Instant,
}

/// Registered executors, forgotten when they stop re-announcing.
#[derive(Debug)]
pub struct ExecutorRegistry {
    ttl: Duration,
    interactive_vcores: u32,
    job_vcores: u32,
    executors: RwLock<HashMap<String, Entry>>,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new(ttl: Duration, interactive_vcores: u32, job_vcores: u32) -> Self {
        Self {
            ttl,
            interactive_vcores,
            job_vcores,
            executors: RwLock::new(HashMap::new()),
        }
    }

    /// How long an announcement lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records (or refreshes) an executor.
    pub fn upsert(&self, mut info: ExecutorInfo) {
        info.last_seen_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.executors.write().insert(
            info.executor_id.clone(),
            Entry {
                info,
                seen: Instant::now(),
            },
        );
    }

    /// Live executors, expired ones dropped.
    pub fn live(&self) -> Vec<ExecutorInfo> {
        let mut map = self.executors.write();
        map.retain(|_, e| e.seen.elapsed() <= self.ttl);
        let mut v: Vec<ExecutorInfo> = map.values().map(|e| e.info.clone()).collect();
        v.sort_by(|a, b| a.executor_id.cmp(&b.executor_id));
        v
    }

    /// What a pool can lease: min(configured, offered by executors that
    /// announced themselves within the TTL).
    pub fn capacity(&self, pool: Pool) -> u32 {
        let configured = match pool {
            Pool::Job => self.job_vcores,
            _ => self.interactive_vcores,
        };
        let offered: u32 = self
            .live()
            .iter()
            .filter(|e| e.pool == pool as i32)
            .map(|e| e.vcores)
            .sum();
        configured.min(offered)
    }

    /// The pool of a live executor.
    pub fn pool_of(&self, executor_id: &str) -> Option<Pool> {
        let map = self.executors.read();
        map.get(executor_id)
            .filter(|e| e.seen.elapsed() <= self.ttl)
            .and_then(|e| Pool::try_from(e.info.pool).ok())
    }

    /// Pool capacities: min(configured, offered by live executors).
    pub fn pools(&self, live: &[ExecutorInfo]) -> Vec<PoolInfo> {
        [
            (Pool::Interactive, self.interactive_vcores),
            (Pool::Job, self.job_vcores),
        ]
        .into_iter()
        .map(|(pool, configured)| {
            let offered: u32 = live
                .iter()
                .filter(|e| e.pool == pool as i32 && e.scheduler_alive)
                .map(|e| e.vcores)
                .sum();
            PoolInfo {
                pool: pool as i32,
                name: pool.label().to_string(),
                configured_vcores: configured,
                offered_vcores: offered,
                capacity_vcores: configured.min(offered),
                ..Default::default()
            }
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str, pool: Pool, vcores: u32) -> ExecutorInfo {
        ExecutorInfo {
            executor_id: id.into(),
            pool: pool as i32,
            vcores,
            scheduler_alive: true,
            ..Default::default()
        }
    }

    #[test]
    fn capacity_is_min_of_configured_and_offered() {
        let r = ExecutorRegistry::new(Duration::from_secs(10), 760, 4);
        r.upsert(exec("a", Pool::Interactive, 8));
        r.upsert(exec("b", Pool::Job, 8));
        let live = r.live();
        let pools = r.pools(&live);
        assert_eq!(pools[0].capacity_vcores, 8);
        assert_eq!(pools[1].capacity_vcores, 4);
        assert_eq!(pools[1].offered_vcores, 8);
    }

    #[test]
    fn silent_executors_expire() {
        let r = ExecutorRegistry::new(Duration::from_millis(0), 760, 240);
        r.upsert(exec("a", Pool::Interactive, 8));
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.live().is_empty());
    }
}
