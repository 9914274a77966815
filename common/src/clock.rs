//! Time, in the two senses Tarn needs it.
//!
//! - [`unix_ms`]: wall-clock time, for what is recorded and shown (when a
//!   lease was granted, when a run ended, a credential's expiry that
//!   another process checks).
//! - [`Clock`]: monotonic time, for deadlines inside one process (a
//!   lease's TTL). It never jumps with the wall clock, and tests inject a
//!   [`ManualClock`] so a TTL is crossed by advancing it, not by sleeping
//!   and hoping a loaded machine kept up.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Milliseconds since the Unix epoch (0 if the wall clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A monotonic clock: time elapsed since an origin of its own.
pub trait Clock: Send + Sync + Debug {
    /// Time since the clock's origin; never decreases.
    fn now(&self) -> Duration;

    /// [`Clock::now`] in whole milliseconds.
    fn now_ms(&self) -> u64 {
        self.now().as_millis() as u64
    }
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let c = ManualClock::default();
        assert_eq!(c.now_ms(), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), 0);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ms(), 1500);
    }

    #[test]
    fn the_system_clock_never_goes_back() {
        let c = SystemClock::default();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.now() > a);
    }
}
