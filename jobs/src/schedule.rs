//! When a job runs: its schedule and the fire times it produces.
//!
//! The JSON form names exactly one kind of recurrence, with optional
//! settings beside it:
//!
//! ```json
//! {"every": "15m"}
//! {"daily": "02:30", "timezone": "Europe/Berlin"}
//! {"weekly": {"days": ["mon", "thu"], "at": "08:00"}}
//! {"monthly": {"day": 31, "at": "06:00"}, "catch_up": "skip"}
//! {"cron": "0 */2 * * *", "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
//! ```
//!
//! Times of day, weekdays, month days and cron fields are read on the wall
//! clock of `timezone`. `every` is not: it counts real time from its anchor
//! (`start`, or the job's creation time), so a clock change neither
//! stretches nor squeezes it.
//!
//! Clock changes, for the wall-clock kinds (`daily`, `weekly`, `monthly`,
//! and cron expressions with fixed seconds, minute and hour):
//!
//! - a time that does not exist that day (the clock springs forward over
//!   it) fires at the first instant after the gap: 02:30 in Europe/Berlin
//!   on the last Sunday of March fires at 03:00 CEST;
//! - a time that occurs twice (the clock falls back over it) fires once, at
//!   the first occurrence.
//!
//! A cron expression with a wildcard or step in its seconds, minute or hour
//! field (`*/15 * * * *`) keeps its real-time rhythm instead: it skips the
//! times a gap removes and fires on both passes of a repeated hour.
//!
//! `start` is inclusive and `end` exclusive: a schedule fires at times `t`
//! with `start <= t < end`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The most fire times [`Schedule::missed`] returns.
pub const MAX_MISSED: usize = 1000;

/// A job's schedule. Its JSON form is flat: the kind's key (`every`,
/// `daily`, ...) beside `timezone`, `start`, `end`, `catch_up` and
/// `overlap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSchedule", into = "RawSchedule")]
pub struct Schedule {
    /// The kind of recurrence.
    pub when: When,
    /// IANA time zone the wall-clock kinds are read in; `UTC` by default.
    pub timezone: String,
    /// No fire before this instant (inclusive).
    pub start: Option<DateTime<Utc>>,
    /// No fire at or after this instant.
    pub end: Option<DateTime<Utc>>,
    /// What happens to fires missed while no coordinator led.
    pub catch_up: CatchUp,
    /// What happens to a fire while the previous run is queued or running.
    pub overlap: Overlap,
}

/// The kind of recurrence. Serialized on its own it is externally tagged
/// (`{"daily": "02:30"}`), the same key a [`Schedule`] uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum When {
    /// A fixed period of real time from the anchor, e.g. `"15m"`.
    Every(#[serde(with = "humantime_serde")] Duration),
    /// Every day at `HH:MM`.
    Daily(String),
    /// On the listed days (`mon` ... `sun`) at `HH:MM`.
    Weekly {
        /// Days of the week, e.g. `["mon", "thu"]`.
        days: Vec<String>,
        /// Time of day, `HH:MM`.
        at: String,
    },
    /// On one day of each month at `HH:MM`; months without that day fire on
    /// their last day.
    Monthly {
        /// Day of the month, 1 to 31.
        day: u32,
        /// Time of day, `HH:MM`.
        at: String,
    },
    /// A cron expression: 5 fields, or 6 with seconds first.
    Cron(String),
}

/// What happens to fires missed while no coordinator led.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once on recovery, however many fires were missed.
    #[default]
    Once,
    /// Run nothing for them; wait for the next fire.
    Skip,
}

/// What happens to a fire while the previous run is queued or running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Record the fire as skipped.
    #[default]
    Skip,
    /// Queue a run behind the previous one.
    Queue,
}

/// The wire form: every key optional, so that a missing or doubled kind
/// gets its own message rather than serde's.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weekly: Option<WeeklyAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monthly: Option<MonthlyAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default)]
    overlap: Overlap,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeeklyAt {
    days: Vec<String>,
    at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MonthlyAt {
    day: u32,
    at: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_instant(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<DateTime<Utc>>, Error> {
    value
        .map(|v| match DateTime::parse_from_rfc3339(&v) {
            Ok(t) => Ok(t.with_timezone(&Utc)),
            Err(_) => Err(Error::Timestamp { field, value: v }),
        })
        .transpose()
}

impl TryFrom<RawSchedule> for Schedule {
    type Error = Error;

    fn try_from(raw: RawSchedule) -> Result<Schedule, Error> {
        let mut kinds = Vec::new();
        if let Some(every) = raw.every {
            let d = humantime::parse_duration(&every).map_err(|_| Error::Every { value: every })?;
            kinds.push(("every", When::Every(d)));
        }
        if let Some(at) = raw.daily {
            kinds.push(("daily", When::Daily(at)));
        }
        if let Some(WeeklyAt { days, at }) = raw.weekly {
            kinds.push(("weekly", When::Weekly { days, at }));
        }
        if let Some(MonthlyAt { day, at }) = raw.monthly {
            kinds.push(("monthly", When::Monthly { day, at }));
        }
        if let Some(expr) = raw.cron {
            kinds.push(("cron", When::Cron(expr)));
        }
        if kinds.len() > 1 {
            let names: Vec<_> = kinds.iter().map(|(name, _)| *name).collect();
            return Err(Error::ScheduleKinds {
                kinds: names.join(", "),
            });
        }
        let Some((_, when)) = kinds.pop() else {
            return Err(Error::NoScheduleKind);
        };
        Ok(Schedule {
            when,
            timezone: raw.timezone,
            start: parse_instant("start", raw.start)?,
            end: parse_instant("end", raw.end)?,
            catch_up: raw.catch_up,
            overlap: raw.overlap,
        })
    }
}

impl From<Schedule> for RawSchedule {
    fn from(s: Schedule) -> RawSchedule {
        let mut raw = RawSchedule {
            every: None,
            daily: None,
            weekly: None,
            monthly: None,
            cron: None,
            timezone: s.timezone,
            start: s.start.map(rfc3339),
            end: s.end.map(rfc3339),
            catch_up: s.catch_up,
            overlap: s.overlap,
        };
        match s.when {
            When::Every(d) => raw.every = Some(humantime::format_duration(d).to_string()),
            When::Daily(at) => raw.daily = Some(at),
            When::Weekly { days, at } => raw.weekly = Some(WeeklyAt { days, at }),
            When::Monthly { day, at } => raw.monthly = Some(MonthlyAt { day, at }),
            When::Cron(expr) => raw.cron = Some(expr),
        }
        raw
    }
}

/// A schedule checked and turned into what the fire-time arithmetic needs.
struct Compiled {
    tz: Tz,
    rule: Rule,
}

enum Rule {
    Every(u128),
    Daily(NaiveTime),
    /// Which weekdays fire, indexed from Monday.
    Weekly([bool; 7], NaiveTime),
    Monthly(u32, NaiveTime),
    Cron(Box<Cron>, String),
}

impl Schedule {
    /// A schedule of `when` with every other setting at its default.
    pub fn new(when: When) -> Schedule {
        Schedule {
            when,
            timezone: utc(),
            start: None,
            end: None,
            catch_up: CatchUp::default(),
            overlap: Overlap::default(),
        }
    }

    /// Reads a schedule from its JSON form, with an [`Error`] naming what
    /// is wrong rather than a decoder message. Does not [`validate`] it.
    ///
    /// [`validate`]: Schedule::validate
    pub fn from_json(value: &serde_json::Value) -> Result<Schedule, Error> {
        let raw: RawSchedule =
            serde_json::from_value(value.clone()).map_err(|e| Error::ScheduleShape {
                message: e.to_string(),
            })?;
        Schedule::try_from(raw)
    }

    /// Checks the schedule: the time zone is known, times, days and cron
    /// parse, `end` is after `start`, and fires are never closer together
    /// than `min_interval`.
    ///
    /// For `every` the period is compared directly. For the other kinds 50
    /// consecutive fires are computed from the start of each of 12 months
    /// and their gaps compared; a pattern whose fires are close together
    /// at some time of day, day of week or month shows up there. A clock
    /// change shortens the gap of a wall-clock schedule by its size, so a
    /// daily schedule is refused when `min_interval` is above 23 hours.
    /// With a zero `min_interval` only one fire is computed, to show the
    /// schedule fires at all.
    pub fn validate(&self, min_interval: Duration) -> Result<(), Error> {
        let compiled = self.compile()?;
        if let (Some(start), Some(end)) = (self.start, self.end) {
            if end <= start {
                return Err(Error::Bounds {
                    start: rfc3339(start),
                    end: rfc3339(end),
                });
            }
        }
        if let Rule::Every(period) = compiled.rule {
            if period < min_interval.as_nanos() {
                let anchor = self.start.unwrap_or(reference());
                let second = compiled.next(anchor, anchor)?;
                return Err(too_frequent(anchor, second, min_interval));
            }
            return Ok(());
        }
        let base = self.start.unwrap_or(reference());
        if min_interval.is_zero() {
            // Nothing is too frequent; one fire shows the schedule fires at all.
            compiled.next(base, base)?;
            return Ok(());
        }
        for month in 0..12 {
            // Each sample starts at another day of the month and hour of the day.
            let Some(mut at) =
                base.checked_add_signed(TimeDelta::hours(30 * 24 * month + 5 * month))
            else {
                break;
            };
            let mut previous: Option<DateTime<Utc>> = None;
            for _ in 0..50 {
                let next = compiled.next(at, base)?;
                if let Some(prev) = previous {
                    let gap = (next - prev).to_std().unwrap_or(Duration::ZERO);
                    if gap < min_interval {
                        return Err(too_frequent(prev, next, min_interval));
                    }
                }
                previous = Some(next);
                at = next;
            }
        }
        Ok(())
    }

    /// The first fire strictly after `after`, or `None` when there is none
    /// before `end`. `anchor` is where an `every` schedule without `start`
    /// counts from, normally the job's creation time; other kinds ignore
    /// it. See the module docs for clock changes.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        anchor: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        self.next_with(&self.compile()?, after, anchor)
    }

    /// The fires in `(last_fire, now]`, oldest first, at most
    /// [`MAX_MISSED`] of them (the oldest ones), for deciding what to catch
    /// up after a time without a leading coordinator.
    pub fn missed(
        &self,
        last_fire: DateTime<Utc>,
        now: DateTime<Utc>,
        anchor: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, Error> {
        let compiled = self.compile()?;
        let mut fires = Vec::new();
        let mut at = last_fire;
        while fires.len() < MAX_MISSED {
            match self.next_with(&compiled, at, anchor)? {
                Some(fire) if fire <= now => {
                    fires.push(fire);
                    at = fire;
                }
                _ => break,
            }
        }
        Ok(fires)
    }

    fn next_with(
        &self,
        compiled: &Compiled,
        after: DateTime<Utc>,
        anchor: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let anchor = self.start.unwrap_or(anchor);
        // Fires at `start` itself count, so search from just before it.
        let from = match self.start {
            Some(start) if after < start => start
                .checked_sub_signed(TimeDelta::nanoseconds(1))
                .unwrap_or(start),
            _ => after,
        };
        let next = compiled.next(from, anchor)?;
        Ok(Some(next).filter(|t| self.end.is_none_or(|end| *t < end)))
    }

    fn compile(&self) -> Result<Compiled, Error> {
        let tz = Tz::from_str(&self.timezone).map_err(|_| Error::Timezone {
            timezone: self.timezone.clone(),
        })?;
        let rule = match &self.when {
            When::Every(period) => match period.as_nanos() {
                0 => return Err(Error::ZeroInterval),
                n => Rule::Every(n),
            },
            When::Daily(at) => Rule::Daily(time_of_day("daily", at)?),
            When::Weekly { days, at } => {
                let mut set = [false; 7];
                for day in days {
                    set[weekday(day)?.num_days_from_monday() as usize] = true;
                }
                if days.is_empty() {
                    return Err(Error::NoWeekdays);
                }
                Rule::Weekly(set, time_of_day("weekly.at", at)?)
            }
            When::Monthly { day, at } => {
                if !(1..=31).contains(day) {
                    return Err(Error::MonthDay { day: *day });
                }
                Rule::Monthly(*day, time_of_day("monthly.at", at)?)
            }
            When::Cron(expr) => {
                let parser = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build();
                let cron = parser.parse(expr).map_err(|e| Error::Cron {
                    expr: expr.clone(),
                    reason: e.to_string(),
                })?;
                Rule::Cron(Box::new(cron), expr.clone())
            }
        };
        Ok(Compiled { tz, rule })
    }
}

/// Where frequency sampling starts when a schedule has no `start`: any
/// fixed instant does, a fixed one keeps validation deterministic.
fn reference() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default() // 2026-01-01
}

fn too_frequent(first: DateTime<Utc>, second: DateTime<Utc>, min: Duration) -> Error {
    let gap = (second - first).to_std().unwrap_or(Duration::ZERO);
    Error::TooFrequent {
        first: rfc3339(first),
        second: rfc3339(second),
        gap: humantime::format_duration(gap).to_string(),
        min: humantime::format_duration(min).to_string(),
    }
}

/// `H:MM` or `HH:MM`, 24-hour.
fn time_of_day(field: &'static str, value: &str) -> Result<NaiveTime, Error> {
    let refuse = || Error::TimeOfDay {
        field,
        value: value.to_owned(),
    };
    let (h, m) = value.split_once(':').ok_or_else(refuse)?;
    let digits = |s: &str, widths: &[usize]| {
        widths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, &[1, 2]) || !digits(m, &[2]) {
        return Err(refuse());
    }
    let (h, m) = (
        h.parse().map_err(|_| refuse())?,
        m.parse().map_err(|_| refuse())?,
    );
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(refuse)
}

/// `mon` ... `sun` or the full English name, in any case.
fn weekday(value: &str) -> Result<Weekday, Error> {
    const DAYS: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Mon),
        ("tue", "tuesday", Weekday::Tue),
        ("wed", "wednesday", Weekday::Wed),
        ("thu", "thursday", Weekday::Thu),
        ("fri", "friday", Weekday::Fri),
        ("sat", "saturday", Weekday::Sat),
        ("sun", "sunday", Weekday::Sun),
    ];
    let lower = value.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(short, long, _)| lower == *short || lower == *long)
        .map(|(_, _, day)| *day)
        .ok_or_else(|| Error::Weekday {
            value: value.to_owned(),
        })
}

fn last_day_of_month(year: i32, month: u32) -> Option<u32> {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)?
        .pred_opt()
        .map(|d| d.day())
}

impl Compiled {
    /// The first fire strictly after `from`, ignoring start and end.
    fn next(&self, from: DateTime<Utc>, anchor: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
        let out_of_range = || Error::OutOfRange {
            after: rfc3339(from),
        };
        match &self.rule {
            Rule::Every(period) => every_next(*period, from, anchor).ok_or_else(out_of_range),
            Rule::Cron(cron, expr) => {
                let local = from.with_timezone(&self.tz);
                cron.find_next_occurrence(&local, false)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| Error::CronNeverFires { expr: expr.clone() })
            }
            Rule::Daily(at) => self.first_local_after(from, candidate_days(from, self.tz, 4), *at),
            Rule::Weekly(days, at) => {
                let dates = candidate_days(from, self.tz, 9)
                    .into_iter()
                    .filter(|d| days[d.weekday().num_days_from_monday() as usize])
                    .collect();
                self.first_local_after(from, dates, *at)
            }
            Rule::Monthly(day, at) => {
                let local = from.with_timezone(&self.tz).date_naive();
                let mut dates = Vec::new();
                let (mut year, mut month) = if local.month() == 1 {
                    (local.year() - 1, 12)
                } else {
                    (local.year(), local.month() - 1)
                };
                for _ in 0..4 {
                    if let Some(last) = last_day_of_month(year, month) {
                        dates.extend(NaiveDate::from_ymd_opt(year, month, (*day).min(last)));
                    }
                    (year, month) = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                }
                self.first_local_after(from, dates, *at)
            }
        }
        .and_then(|t| if t > from { Ok(t) } else { Err(out_of_range()) })
    }

    /// The first of `dates` at `at` on the local clock that is after
    /// `from`. The dates are ascending, so their fires are too.
    fn first_local_after(
        &self,
        from: DateTime<Utc>,
        dates: Vec<NaiveDate>,
        at: NaiveTime,
    ) -> Result<DateTime<Utc>, Error> {
        for date in dates {
            if let Some(t) = resolve_local(self.tz, date.and_time(at)) {
                if t > from {
                    return Ok(t);
                }
            }
        }
        Err(Error::OutOfRange {
            after: rfc3339(from),
        })
    }
}

/// `count` consecutive local dates starting the day before `from`'s local
/// date, which covers a fire on that day whose instant is still ahead.
fn candidate_days(from: DateTime<Utc>, tz: Tz, count: u64) -> Vec<NaiveDate> {
    let today = from.with_timezone(&tz).date_naive();
    today
        .pred_opt()
        .into_iter()
        .flat_map(|first| first.iter_days().take(count as usize))
        .collect()
}

/// The instant a local wall-clock time fires at: the earlier of two when
/// the clock falls back over it, the end of the gap when it springs over it.
fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The first instant whose local time is at or after `local`, which lies in
/// a gap: the instant the clock jumps. Local time grows with real time
/// everywhere within a day of a gap (transitions are months apart), so a
/// binary search over the seconds around it finds the jump.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let wall = local.and_utc().timestamp();
    // No zone is more than 15 hours from UTC, so the local time at `lo` is
    // before `local` and at `hi` after it.
    let (mut lo, mut hi) = (wall - 15 * 3600, wall + 15 * 3600);
    let local_at = |secs: i64| {
        DateTime::<Utc>::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).naive_local())
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_at(mid)? >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::<Utc>::from_timestamp(hi, 0)
}

/// The first `anchor + k * period` (k >= 0) after `from`.
fn every_next(period: u128, from: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if from < anchor {
        return Some(anchor);
    }
    let elapsed = from - anchor;
    let elapsed_ns =
        i128::from(elapsed.num_seconds()) * 1_000_000_000 + i128::from(elapsed.subsec_nanos());
    let period = i128::try_from(period).ok()?;
    let offset = (elapsed_ns / period + 1).checked_mul(period)?;
    let secs = i64::try_from(offset / 1_000_000_000).ok()?;
    let nanos = u32::try_from(offset % 1_000_000_000).ok()?;
    anchor.checked_add_signed(TimeDelta::new(secs, nanos)?)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
