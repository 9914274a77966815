//! The executor's memory budget: one pool for the process, a share of it
//! per lease.
//!
//! Every operator reserves memory from its task's pool before it buffers
//! (hash tables, sorts, joins). The process pool caps the executor as a
//! whole, so no query can take the machine; each lease's share caps what
//! one session's (or job run's) work may hold on this executor —
//! `memory_per_vcore` times its vCores — so one analyst's join runs out of
//! its own share (and spills, or fails with `TARN-2904`) instead of
//! starving everyone else's queries.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use tarn_common::{ErrorCode, TarnError};

/// The process's pool: `limit` bytes, first come first served, naming its
/// largest consumers when it runs out.
pub fn process_pool(limit: usize) -> Arc<dyn MemoryPool> {
    Arc::new(TrackConsumersPool::new(
        GreedyMemoryPool::new(limit),
        NonZeroUsize::new(3).expect("3 is not zero"),
    ))
}

/// The default budget: three quarters of the machine's memory.
pub fn default_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(8 << 30);
    total / 4 * 3
}

/// One lease's share of the process pool.
#[derive(Debug)]
pub struct LeaseShare {
    parent: Arc<dyn MemoryPool>,
    cap: usize,
    used: AtomicUsize,
    label: String,
}

impl LeaseShare {
    /// A share of `cap` bytes of `parent` for `label` (the lease, for
    /// messages).
    pub fn new(parent: Arc<dyn MemoryPool>, cap: usize, label: impl Into<String>) -> Self {
        Self {
            parent,
            cap,
            used: AtomicUsize::new(0),
            label: label.into(),
        }
    }
}

impl fmt::Display for LeaseShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LeaseShare({}: {} of {} bytes)",
            self.label,
            self.used.load(Ordering::Relaxed),
            self.cap
        )
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl MemoryPool for LeaseShare {
    fn name(&self) -> &str {
        "LeaseShare"
    }

    fn register(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.parent.register(consumer)
    }

    fn unregister(&self, consumer: &datafusion::execution::memory_pool::MemoryConsumer) {
        self.parent.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.parent.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.parent.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let cap = self.cap;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let new = used.checked_add(additional)?;
                (new <= cap).then_some(new)
            })
            .map_err(|used| {
                // Operators that can spill react to this error kind; the
                // text carries the code to the gateway.
                DataFusionError::ResourcesExhausted(
                    TarnError::new(
                        ErrorCode::MemoryLimitExceeded,
                        format!(
                            "{} asked for {} more, but {} holds {} of its {} share on this executor",
                            reservation.consumer().name(),
                            mib(additional),
                            self.label,
                            mib(used),
                            mib(cap)
                        ),
                    )
                    .to_string(),
                )
            })?;
        if let Err(e) = self.parent.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(
                TarnError::new(
                    ErrorCode::MemoryLimitExceeded,
                    format!("the executor's memory is all reserved: {e}"),
                )
                .to_string(),
            ));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_share_stops_at_its_cap_and_gives_back_what_it_held() {
        let process = process_pool(1000);
        let a: Arc<dyn MemoryPool> =
            Arc::new(LeaseShare::new(Arc::clone(&process), 600, "lease a"));
        let b: Arc<dyn MemoryPool> =
            Arc::new(LeaseShare::new(Arc::clone(&process), 600, "lease b"));
        let ra = MemoryConsumer::new("join").register(&a);
        let rb = MemoryConsumer::new("sort").register(&b);
        ra.try_grow(500).unwrap();
        let e = ra.try_grow(200).unwrap_err().to_string();
        assert!(e.contains("TARN-2904") && e.contains("lease a"), "{e}");
        // Lease b has its own share, but the process has only 500 left.
        rb.try_grow(450).unwrap();
        let e = rb.try_grow(100).unwrap_err().to_string();
        assert!(e.contains("TARN-2904"), "{e}");
        assert_eq!(b.reserved(), 450, "a refused grow holds nothing");
        ra.free();
        rb.try_grow(100).unwrap();
        assert_eq!(process.reserved(), 550);
    }
}
