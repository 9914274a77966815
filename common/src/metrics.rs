//! Prometheus counters and gauges, and their text exposition.
//!
//! Each role keeps a struct of these, updates them where the work happens
//! and renders them on `/metrics`. Plain atomics: a scrape never blocks a
//! query, and nothing here allocates on the hot path but a new label.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (things in flight).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Counts one more in flight until the returned guard drops, so work
    /// that ends by error, cancel or panic is counted out too.
    pub fn track(&self) -> GaugeGuard<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self)
    }

    /// One more in flight; pair with [`Gauge::dec`] (prefer
    /// [`Gauge::track`] where a borrow can live that long).
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer in flight.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], given back on drop.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters by one label's value (an outcome, a code).
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    /// Adds one for `label`.
    pub fn inc(&self, label: &str) {
        *self.0.lock().entry(label.to_string()).or_default() += 1;
    }

    /// The count for `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.0.lock().get(label).copied().unwrap_or(0)
    }

    /// Counts one outcome when the returned guard drops: `default` unless
    /// [`Outcome::set`] says otherwise (work that is dropped mid-way, as a
    /// cancelled task is, keeps the default).
    pub fn outcome(&self, default: &'static str) -> Outcome<'_> {
        Outcome {
            counter: self,
            label: default,
        }
    }

    fn samples(&self) -> Vec<(String, u64)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// One outcome of a [`LabeledCounter`], counted on drop.
#[derive(Debug)]
pub struct Outcome<'a> {
    counter: &'a LabeledCounter,
    label: &'static str,
}

impl Outcome<'_> {
    /// The outcome to count.
    pub fn set(&mut self, label: &'static str) {
        self.label = label;
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        self.counter.inc(self.label);
    }
}

/// Builds the text exposition format (version 0.0.4).
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    /// The content type `/metrics` answers with.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4";

    /// A gauge with one sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> &mut Self {
        self.header(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {value}");
        self
    }

    /// A counter with one sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.header(name, "counter", help);
        let _ = writeln!(self.0, "{name} {value}");
        self
    }

    /// A counter with a sample per value of `label`.
    pub fn labeled(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        counter: &LabeledCounter,
    ) -> &mut Self {
        self.header(name, "counter", help);
        for (value, n) in counter.samples() {
            let value = value.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} {n}");
        }
        self
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

/// The sample of `name` (with its label set, if any, as written) in an
/// exposition text: what a scraper reads, for tests and tools.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_count_work_out_however_it_ends() {
        let g = Gauge::default();
        {
            let _a = g.track();
            let _b = g.track();
            assert_eq!(g.get(), 2);
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = g.track();
            panic!("task failed");
        }));
        assert!(r.is_err());
        assert_eq!(g.get(), 0);
    }

    #[test]
    fn the_exposition_reads_back() {
        let outcomes = LabeledCounter::default();
        outcomes.inc("ok");
        outcomes.inc("ok");
        outcomes.inc("TARN-2100");
        let mut e = Exposition::default();
        e.gauge("tarn_x_running", "in flight", 3).labeled(
            "tarn_x_total",
            "by outcome",
            "outcome",
            &outcomes,
        );
        let text = e.finish();
        assert_eq!(sample(&text, "tarn_x_running"), Some(3.0));
        assert_eq!(sample(&text, "tarn_x_total{outcome=\"ok\"}"), Some(2.0));
        assert_eq!(
            sample(&text, "tarn_x_total{outcome=\"TARN-2100\"}"),
            Some(1.0)
        );
        assert!(text.contains("# TYPE tarn_x_total counter"));
    }
}
