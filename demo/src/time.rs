//! Time units (microseconds, as the tables store them) and the working week.

use chrono::{DateTime, Datelike, Utc, Weekday};

pub(crate) const SEC: i64 = 1_000_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Whether the (UTC) calendar day starting at `day` is Monday to Friday.
pub(crate) fn is_workday(day: i64) -> bool {
    !matches!(
        DateTime::<Utc>::from_timestamp_micros(day + 12 * HOUR).map(|d| d.weekday()),
        Some(Weekday::Sat | Weekday::Sun)
    )
}
