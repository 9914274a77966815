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

    /// What the executors that count offer to `pool`: announced within
    /// the TTL and not draining. Capacity and the pool view both use this.
    fn offered(&self, pool: Pool) -> u32 {
        let map = self.executors.read();
        map.values()
            .filter(|e| counts(e, self.ttl) && e.info.pool == pool as i32)
            .map(|e| e.info.vcores)
            .sum()
    }

    fn configured(&self, pool: Pool) -> u32 {
        match pool {
            Pool::Job => self.job_vcores,
            _ => self.interactive_vcores,
        }
    }

    /// What a pool can lease: min(configured, offered).
    pub fn capacity(&self, pool: Pool) -> u32 {
        self.configured(pool).min(self.offered(pool))
    }

    /// The pool of an executor that counts (a draining one gets no work).
    pub fn pool_of(&self, executor_id: &str) -> Option<Pool> {
        let map = self.executors.read();
        map.get(executor_id)
            .filter(|e| counts(e, self.ttl))
            .and_then(|e| Pool::try_from(e.info.pool).ok())
    }

    /// Pool capacities: the same figures as [`ExecutorRegistry::capacity`].
    pub fn pools(&self) -> Vec<PoolInfo> {
        [Pool::Interactive, Pool::Job]
            .into_iter()
            .map(|pool| PoolInfo {
                pool: pool as i32,
                name: pool.label().to_string(),
                configured_vcores: self.configured(pool),
                offered_vcores: self.offered(pool),
                capacity_vcores: self.capacity(pool),
                ..Default::default()
            })
            .collect()
    }
}

/// Whether an executor counts toward its pool.
fn counts(e: &Entry, ttl: Duration) -> bool {
    e.seen.elapsed() <= ttl && !e.info.draining
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
        let pools = r.pools();
        assert_eq!(pools[0].capacity_vcores, 8);
        assert_eq!(pools[1].capacity_vcores, 4);
        assert_eq!(pools[1].offered_vcores, 8);
        assert_eq!(r.capacity(Pool::Interactive), pools[0].capacity_vcores);
    }

    #[test]
    fn a_draining_executor_is_shown_but_not_counted() {
        let r = ExecutorRegistry::new(Duration::from_secs(10), 760, 240);
        r.upsert(exec("a", Pool::Interactive, 8));
        r.upsert(exec("b", Pool::Interactive, 4));
        assert_eq!(r.capacity(Pool::Interactive), 12);
        r.upsert(ExecutorInfo {
            draining: true,
            ..exec("b", Pool::Interactive, 4)
        });
        assert_eq!(r.capacity(Pool::Interactive), 8);
        assert_eq!(r.pools()[0].offered_vcores, 8);
        assert_eq!(r.pool_of("b"), None, "a draining executor gets no work");
        assert_eq!(r.pool_of("a"), Some(Pool::Interactive));
        assert!(r.live().iter().any(|e| e.executor_id == "b" && e.draining));
    }

    #[test]
    fn silent_executors_expire() {
        let r = ExecutorRegistry::new(Duration::from_millis(0), 760, 240);
        r.upsert(exec("a", Pool::Interactive, 8));
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.live().is_empty());
    }
}
