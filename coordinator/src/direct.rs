//! Reservations for direct runs.
//!
//! A direct run is a single-stage plan (no shuffle) that the gateway sends
//! straight to one executor's Flight port instead of submitting a Ballista
//! job: no job graph, no status round trips, no shuffle files between the
//! executor and the client. It still runs on an executor of the lease's pool
//! and still counts against the lease. The reservation is what makes it
//! count: the binding policy adds reserved vCores to the lease's running
//! task-vCores and takes them off the executor's free vCores, so a lease
//! never holds more than its grant across its Ballista tasks and its direct
//! runs together.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One reservation.
#[derive(Debug, Clone)]
struct Reservation {
    lease: String,
    executor_id: String,
    vcores: u32,
    at: Instant,
}

/// The direct runs in flight, by reservation id.
#[derive(Debug, Default)]
pub struct DirectRuns {
    held: Mutex<HashMap<String, Reservation>>,
}

/// A granted reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub reservation_id: String,
    pub executor_id: String,
    pub vcores: u32,
}

/// A reservation older than this is dropped even if never released: its
/// gateway is gone (a live gateway's runs end by the query time limit).
const MAX_AGE: Duration = Duration::from_secs(6 * 3600);

impl DirectRuns {
    /// Reserves up to `want` vCores of `lease` (granted `lease_vcores`) on
    /// the candidate executor (id, vCores) with the most room. Grants as
    /// many as fit, at least one, or nothing.
    pub fn reserve(
        &self,
        lease: &str,
        lease_vcores: u32,
        want: u32,
        candidates: &[(String, u32)],
    ) -> Result<Granted, String> {
        let mut held = self.held.lock();
        held.retain(|_, r| r.at.elapsed() < MAX_AGE);
        let by_lease: u32 = held
            .values()
            .filter(|r| r.lease == lease)
            .map(|r| r.vcores)
            .sum();
        let lease_room = lease_vcores.saturating_sub(by_lease);
        if lease_room == 0 {
            return Err(format!(
                "the lease's {lease_vcores} vCores are all held by its other direct runs"
            ));
        }
        let best = candidates
            .iter()
            .map(|(id, vcores)| {
                let used: u32 = held
                    .values()
                    .filter(|r| &r.executor_id == id)
                    .map(|r| r.vcores)
                    .sum();
                (id, vcores.saturating_sub(used))
            })
            .max_by_key(|(_, room)| *room);
        let Some((executor_id, room)) = best else {
            return Err("no executor of the lease's pool is alive".into());
        };
        let vcores = want.max(1).min(lease_room).min(room);
        if vcores == 0 {
            return Err("no executor of the lease's pool has a free vCore".into());
        }
        let id = format!("direct-{}", uuid::Uuid::new_v4().simple());
        held.insert(
            id.clone(),
            Reservation {
                lease: lease.to_string(),
                executor_id: executor_id.clone(),
                vcores,
                at: Instant::now(),
            },
        );
        Ok(Granted {
            reservation_id: id,
            executor_id: executor_id.clone(),
            vcores,
        })
    }

    /// Ends a reservation; false if it was unknown.
    pub fn release(&self, reservation_id: &str) -> bool {
        self.held.lock().remove(reservation_id).is_some()
    }

    /// Drops the reservations of a lease that no longer exists.
    pub fn forget_lease(&self, lease: &str) {
        self.held.lock().retain(|_, r| r.lease != lease);
    }

    /// vCores held by direct runs, per lease and per executor.
    pub fn held(&self) -> (HashMap<String, u32>, HashMap<String, u32>) {
        let held = self.held.lock();
        let mut by_lease = HashMap::new();
        let mut by_executor = HashMap::new();
        for r in held.values() {
            *by_lease.entry(r.lease.clone()).or_default() += r.vcores;
            *by_executor.entry(r.executor_id.clone()).or_default() += r.vcores;
        }
        (by_lease, by_executor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_the_lease_and_the_executor() {
        let d = DirectRuns::default();
        let execs = vec![("a".to_string(), 4), ("b".to_string(), 2)];
        let g1 = d.reserve("l1", 2, 2, &execs).unwrap();
        assert_eq!((g1.executor_id.as_str(), g1.vcores), ("a", 2));
        // The lease is at its grant: nothing more until a release.
        assert!(d.reserve("l1", 2, 1, &execs).is_err());
        // Another lease goes where there is most room (a has 2, b has 2).
        let g2 = d.reserve("l2", 8, 8, &execs).unwrap();
        assert_eq!(g2.vcores, 2);
        let (by_lease, by_exec) = d.held();
        assert_eq!(by_lease["l1"], 2);
        assert_eq!(by_exec.values().sum::<u32>(), 4);
        assert!(d.release(&g1.reservation_id));
        assert!(!d.release(&g1.reservation_id));
        assert!(d.reserve("l1", 2, 1, &execs).is_ok());
        d.forget_lease("l1");
        assert!(!d.held().0.contains_key("l1"));
    }

    #[test]
    fn nothing_is_granted_without_a_live_executor() {
        let d = DirectRuns::default();
        assert!(d.reserve("l", 2, 1, &[]).is_err());
        assert!(d.reserve("l", 2, 1, &[("a".into(), 0)]).is_err());
    }
}
