use super::*;
use crate::Kind;
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn sched(v: serde_json::Value) -> Schedule {
    Schedule::from_json(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// The next `n` fires after `after`.
fn fires(s: &Schedule, after: &str, n: usize) -> Vec<String> {
    let mut at = t(after);
    let mut out = Vec::new();
    for _ in 0..n {
        match s.next_after(at, t("2000-01-01T00:00:00Z")).unwrap() {
            Some(next) => {
                out.push(rfc3339(next));
                at = next;
            }
            None => break,
        }
    }
    out
}

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

#[test]
fn every_counts_from_the_anchor() {
    let s = sched(json!({"every": "15m"}));
    let anchor = t("2026-01-01T10:00:00Z");
    let next = |after| s.next_after(t(after), anchor).unwrap().map(rfc3339);
    assert_eq!(
        next("2026-01-01T10:07:00Z").unwrap(),
        "2026-01-01T10:15:00Z"
    );
    assert_eq!(
        next("2026-01-01T10:15:00Z").unwrap(),
        "2026-01-01T10:30:00Z"
    );
    assert_eq!(
        next("2026-01-01T09:00:00Z").unwrap(),
        "2026-01-01T10:00:00Z"
    );
    assert_eq!(
        next("2026-03-01T00:00:01Z").unwrap(),
        "2026-03-01T00:15:00Z"
    );

    // With a start, the start is the anchor.
    let s = sched(json!({"every": "40m", "start": "2026-01-01T00:05:00Z"}));
    assert_eq!(
        fires(&s, "2025-01-01T00:00:00Z", 3),
        vec![
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:45:00Z",
            "2026-01-01T01:25:00Z"
        ]
    );
}

#[test]
fn every_ignores_clock_changes() {
    let s = sched(json!({"every": "1h", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&s, "2026-03-29T00:30:00Z", 3),
        vec![
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z",
            "2026-03-29T03:00:00Z"
        ]
    );
}

#[test]
fn daily_in_utc_and_other_zones() {
    let s = sched(json!({"daily": "02:30"}));
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 2),
        vec!["2026-01-01T02:30:00Z", "2026-01-02T02:30:00Z"]
    );
    assert_eq!(
        fires(&s, "2026-01-01T02:30:00Z", 1),
        vec!["2026-01-02T02:30:00Z"]
    );

    let berlin = sched(json!({"daily": "02:30", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&berlin, "2026-01-10T00:00:00Z", 1),
        vec!["2026-01-10T01:30:00Z"]
    );
    assert_eq!(
        fires(&berlin, "2026-07-10T00:00:00Z", 1),
        vec!["2026-07-10T00:30:00Z"]
    );

    let kolkata = sched(json!({"daily": "2:30", "timezone": "Asia/Kolkata"}));
    assert_eq!(
        fires(&kolkata, "2026-01-10T00:00:00Z", 1),
        vec!["2026-01-10T21:00:00Z"]
    );
}

#[test]
fn berlin_spring_forward_fires_after_the_gap() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z).
    let s = sched(json!({"daily": "02:30", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&s, "2026-03-28T12:00:00Z", 3),
        vec![
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
}

#[test]
fn berlin_fall_back_fires_once_at_the_first_occurrence() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens at
    // 00:30Z and again at 01:30Z.
    let s = sched(json!({"daily": "02:30", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", 2),
        vec!["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // Between the two occurrences, the second one is not a fire.
    assert_eq!(
        fires(&s, "2026-10-25T01:00:00Z", 1),
        vec!["2026-10-26T01:30:00Z"]
    );
}

#[test]
fn new_york_both_transitions() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
    let s = sched(json!({"daily": "02:30", "timezone": "America/New_York"}));
    assert_eq!(
        fires(&s, "2026-03-07T12:00:00Z", 2),
        vec!["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    );
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at 05:30Z
    // and 06:30Z.
    let s = sched(json!({"daily": "01:30", "timezone": "America/New_York"}));
    assert_eq!(
        fires(&s, "2026-10-31T12:00:00Z", 2),
        vec!["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
}

#[test]
fn fixed_time_cron_follows_the_same_clock_change_rules() {
    let s = sched(json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&s, "2026-03-28T12:00:00Z", 2),
        vec!["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
    assert_eq!(
        fires(&s, "2026-10-24T12:00:00Z", 2),
        vec!["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    let s = sched(json!({"cron": "30 1 * * *", "timezone": "America/New_York"}));
    assert_eq!(
        fires(&s, "2026-10-31T12:00:00Z", 2),
        vec!["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    );
}

#[test]
fn interval_cron_keeps_real_time_across_fall_back() {
    let s = sched(json!({"cron": "0 * * * *", "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&s, "2026-10-24T23:30:00Z", 4),
        vec![
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z"
        ]
    );
}

#[test]
fn weekly_on_several_days() {
    // 2026-01-05 is a Monday.
    let s = sched(json!({"weekly": {"days": ["thu", "Monday", "mon"], "at": "08:00"}}));
    assert_eq!(
        fires(&s, "2026-01-05T09:00:00Z", 4),
        vec![
            "2026-01-08T08:00:00Z",
            "2026-01-12T08:00:00Z",
            "2026-01-15T08:00:00Z",
            "2026-01-19T08:00:00Z"
        ]
    );
    assert_eq!(
        fires(&s, "2026-01-05T07:59:59Z", 1),
        vec!["2026-01-05T08:00:00Z"]
    );
}

#[test]
fn monthly_on_day_31_fires_on_short_months_last_day() {
    let s = sched(json!({"monthly": {"day": 31, "at": "06:00"}}));
    assert_eq!(
        fires(&s, "2026-01-31T06:00:00Z", 4),
        vec![
            "2026-02-28T06:00:00Z",
            "2026-03-31T06:00:00Z",
            "2026-04-30T06:00:00Z",
            "2026-05-31T06:00:00Z"
        ]
    );
    assert_eq!(
        fires(&s, "2028-02-01T00:00:00Z", 1),
        vec!["2028-02-29T06:00:00Z"]
    );
    assert_eq!(
        fires(&s, "2026-12-31T07:00:00Z", 1),
        vec!["2027-01-31T06:00:00Z"]
    );

    let first = sched(json!({"monthly": {"day": 1, "at": "00:00"}, "timezone": "Europe/Berlin"}));
    assert_eq!(
        fires(&first, "2026-01-15T00:00:00Z", 2),
        vec!["2026-01-31T23:00:00Z", "2026-02-28T23:00:00Z"]
    );
}

#[test]
fn cron_with_and_without_seconds() {
    let s = sched(json!({"cron": "0 */2 * * *"}));
    assert_eq!(
        fires(&s, "2026-01-01T01:00:00Z", 2),
        vec!["2026-01-01T02:00:00Z", "2026-01-01T04:00:00Z"]
    );
    let s = sched(json!({"cron": "15,45 0 12 * * *"}));
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 2),
        vec!["2026-01-01T12:00:15Z", "2026-01-01T12:00:45Z"]
    );
    let s = sched(json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}));
    // 2026-01-09 is a Friday.
    assert_eq!(
        fires(&s, "2026-01-09T09:00:00Z", 1),
        vec!["2026-01-12T08:00:00Z"]
    );
}

#[test]
fn start_and_end_bound_the_fires() {
    let s = sched(json!({
        "daily": "02:30",
        "start": "2026-12-01T00:00:00Z",
        "end": "2027-01-01T00:00:00Z"
    }));
    assert_eq!(
        fires(&s, "2026-06-01T00:00:00Z", 1),
        vec!["2026-12-01T02:30:00Z"]
    );
    assert_eq!(
        fires(&s, "2026-12-30T03:00:00Z", 5),
        vec!["2026-12-31T02:30:00Z"]
    );
    assert_eq!(
        s.next_after(t("2027-02-01T00:00:00Z"), t("2026-01-01T00:00:00Z"))
            .unwrap(),
        None
    );

    // start is inclusive, end exclusive.
    let s = sched(json!({
        "daily": "00:00",
        "start": "2026-12-01T00:00:00Z",
        "end": "2026-12-03T00:00:00Z"
    }));
    assert_eq!(
        fires(&s, "2026-01-01T00:00:00Z", 5),
        vec!["2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"]
    );
}

#[test]
fn missed_lists_fires_up_to_now_with_a_cap() {
    let s = sched(json!({"every": "1h"}));
    let anchor = t("2026-01-01T00:00:00Z");
    let missed = s
        .missed(t("2026-01-01T01:00:00Z"), t("2026-01-01T04:00:00Z"), anchor)
        .unwrap();
    let missed: Vec<_> = missed.into_iter().map(rfc3339).collect();
    assert_eq!(
        missed,
        vec![
            "2026-01-01T02:00:00Z",
            "2026-01-01T03:00:00Z",
            "2026-01-01T04:00:00Z"
        ]
    );
    assert!(s.missed(anchor, anchor, anchor).unwrap().is_empty());

    let fast = sched(json!({"every": "1s"}));
    let many = fast
        .missed(anchor, t("2026-01-02T00:00:00Z"), anchor)
        .unwrap();
    assert_eq!(many.len(), MAX_MISSED);
    assert_eq!(rfc3339(many[0]), "2026-01-01T00:00:01Z");

    let bounded = sched(json!({"daily": "00:00", "end": "2026-01-03T00:00:00Z"}));
    let days = bounded
        .missed(anchor, t("2026-02-01T00:00:00Z"), anchor)
        .unwrap();
    assert_eq!(days, vec![t("2026-01-02T00:00:00Z")]);
}

#[test]
fn min_interval_refuses_fast_schedules() {
    let err = sched(json!({"cron": "* * * * * *"}))
        .validate(MINUTE)
        .unwrap_err();
    assert!(matches!(err, Error::TooFrequent { .. }), "{err}");
    assert_eq!(err.kind(), Kind::InvalidSchedule);
    assert!(err.to_string().contains("1s apart"), "{err}");
    assert!(err.to_string().contains("minimum interval of 1m"), "{err}");
    sched(json!({"cron": "* * * * * *"}))
        .validate(SECOND)
        .unwrap();

    let err = sched(json!({"every": "10s"})).validate(MINUTE).unwrap_err();
    assert!(matches!(err, Error::TooFrequent { .. }), "{err}");
    sched(json!({"every": "10s"})).validate(SECOND).unwrap();
    sched(json!({"every": "1m"})).validate(MINUTE).unwrap();

    // Fast only during one hour of the day.
    let err = sched(json!({"cron": "*/2 3 * * *"})).validate(Duration::from_secs(300));
    assert!(matches!(err, Err(Error::TooFrequent { .. })), "{err:?}");

    for ok in [
        json!({"cron": "0 */2 * * *"}),
        json!({"daily": "02:30", "timezone": "Europe/Berlin"}),
        json!({"weekly": {"days": ["mon", "tue"], "at": "23:59"}}),
        json!({"monthly": {"day": 31, "at": "00:00"}}),
    ] {
        sched(ok.clone())
            .validate(MINUTE)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn json_round_trips() {
    for v in [
        json!({"every": "15m"}),
        json!({"every": "1h 30m", "timezone": "UTC"}),
        json!({"daily": "02:30", "timezone": "Europe/Berlin", "catch_up": "skip"}),
        json!({"weekly": {"days": ["mon", "thu"], "at": "08:00"}, "overlap": "queue"}),
        json!({"monthly": {"day": 1, "at": "06:00"}}),
        json!({"cron": "0 */2 * * *", "start": "2026-12-01T00:00:00Z",
               "end": "2027-01-01T00:00:00Z"}),
    ] {
        let s: Schedule = serde_json::from_value(v.clone()).unwrap();
        let out = serde_json::to_value(&s).unwrap();
        let back: Schedule = serde_json::from_value(out.clone()).unwrap();
        assert_eq!(back, s, "{v}");
        // Every key given comes back with its value.
        for (key, value) in v.as_object().unwrap() {
            assert_eq!(&out[key], value, "{key} in {out}");
        }
    }
    let s = sched(json!({"daily": "02:30"}));
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"daily": "02:30", "timezone": "UTC", "catch_up": "once", "overlap": "skip"})
    );
    assert_eq!(s, Schedule::new(When::Daily("02:30".into())));
    assert_eq!(
        serde_json::to_value(When::Every(Duration::from_secs(90))).unwrap(),
        json!({"every": "1m 30s"})
    );
}

#[test]
fn shape_errors_name_the_problem() {
    let err = Schedule::from_json(&json!({"daily": "02:30", "cron": "* * * * *"})).unwrap_err();
    assert_eq!(
        err,
        Error::ScheduleKinds {
            kinds: "daily, cron".into()
        }
    );
    assert_eq!(err.kind(), Kind::InvalidSchedule);
    let err = Schedule::from_json(&json!({"timezone": "UTC"})).unwrap_err();
    assert_eq!(err, Error::NoScheduleKind);
    let err = Schedule::from_json(&json!({"daily": "02:30", "tz": "UTC"})).unwrap_err();
    assert!(matches!(err, Error::ScheduleShape { .. }), "{err}");
    assert!(err.to_string().contains("unknown field `tz`"), "{err}");
    let err = Schedule::from_json(&json!({"every": "soon"})).unwrap_err();
    assert_eq!(
        err,
        Error::Every {
            value: "soon".into()
        }
    );
    let err = Schedule::from_json(&json!({"daily": "02:30", "start": "tomorrow"})).unwrap_err();
    assert_eq!(
        err,
        Error::Timestamp {
            field: "start",
            value: "tomorrow".into()
        }
    );
    let err = Schedule::from_json(&json!({"weekly": {"days": ["mon"], "at": "1:00", "x": 1}}))
        .unwrap_err();
    assert!(matches!(err, Error::ScheduleShape { .. }), "{err}");

    // Through serde the same checks run, with the same message.
    let err =
        serde_json::from_value::<Schedule>(json!({"daily": "1:00", "every": "1h"})).unwrap_err();
    assert!(
        err.to_string().contains("several kinds (every, daily)"),
        "{err}"
    );
}

#[test]
fn validate_errors_name_the_problem() {
    let check = |v: serde_json::Value| sched(v).validate(MINUTE).unwrap_err();

    let err = check(json!({"daily": "02:30", "timezone": "Mars/Olympus"}));
    assert_eq!(
        err,
        Error::Timezone {
            timezone: "Mars/Olympus".into()
        }
    );

    let err = check(json!({"daily": "25:00"}));
    assert_eq!(
        err.to_string(),
        "schedule.daily \"25:00\" is not a time of day HH:MM (24-hour); write e.g. \"02:30\""
    );
    for bad in [
        "2:3", "02:60", "0230", "-1:00", "02:30:00", " 02:30", "ab:cd", "24:00",
    ] {
        assert!(
            matches!(
                check(json!({"daily": bad})),
                Error::TimeOfDay { field: "daily", .. }
            ),
            "{bad}"
        );
    }
    let err = check(json!({"weekly": {"days": ["mon", "funday"], "at": "08:00"}}));
    assert_eq!(
        err,
        Error::Weekday {
            value: "funday".into()
        }
    );
    assert!(err.to_string().contains("use mon, tue"), "{err}");
    let err = check(json!({"weekly": {"days": [], "at": "08:00"}}));
    assert_eq!(err, Error::NoWeekdays);
    let err = check(json!({"weekly": {"days": ["fri"], "at": "8"}}));
    assert!(matches!(
        err,
        Error::TimeOfDay {
            field: "weekly.at",
            ..
        }
    ));
    for day in [0, 32] {
        assert_eq!(
            check(json!({"monthly": {"day": day, "at": "06:00"}})),
            Error::MonthDay { day }
        );
    }
    let err = check(json!({"cron": "61 * * * *"}));
    assert!(matches!(err, Error::Cron { .. }), "{err}");
    let err = check(json!({"cron": "0 0 1 1 * 2030"}));
    assert!(matches!(err, Error::Cron { .. }), "{err}");
    let err = check(json!({"cron": "0 0 30 2 *"}));
    assert_eq!(
        err,
        Error::CronNeverFires {
            expr: "0 0 30 2 *".into()
        }
    );
    assert_eq!(check(json!({"every": "0s"})), Error::ZeroInterval);
    let err = check(json!({
        "every": "1h", "start": "2027-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"
    }));
    assert!(matches!(err, Error::Bounds { .. }), "{err}");
    // next_after reports the same errors instead of guessing.
    let bad = sched(json!({"daily": "25:00"}));
    assert!(bad
        .next_after(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z"))
        .is_err());
}

#[test]
fn gap_end_is_exact_for_odd_offsets() {
    // Lord Howe Island moves its clock by 30 minutes: 02:00 -> 02:30 on
    // 2026-10-04 (15:30Z on the 3rd).
    let s = sched(json!({"daily": "02:15", "timezone": "Australia/Lord_Howe"}));
    assert_eq!(
        fires(&s, "2026-10-03T00:00:00Z", 1),
        vec!["2026-10-03T15:30:00Z"]
    );
}

#[test]
fn extreme_inputs_are_errors_or_answers_not_panics() {
    let after = t("2026-01-01T00:00:00Z");
    for v in [
        json!({"every": "500000years"}),
        json!({"every": "1ns"}),
        json!({"every": "1h", "start": "9999-12-31T23:59:59Z"}),
        json!({"daily": "23:59", "start": "9999-12-31T23:59:59Z"}),
        json!({"monthly": {"day": 31, "at": "23:59"}, "start": "9999-12-31T00:00:00Z"}),
        json!({"cron": "0 0 * * *", "start": "9999-12-31T00:00:00Z"}),
        json!({"cron": "0 0 29 2 *", "timezone": "Pacific/Kiritimati"}),
        json!({"weekly": {"days": ["sun"], "at": "00:00"}, "start": "0000-01-01T00:00:00Z"}),
    ] {
        let s = sched(v);
        let _ = s.validate(MINUTE);
        let _ = s.next_after(after, after);
        let _ = s.missed(after, t("2026-01-02T00:00:00Z"), after);
    }
    let leap = sched(json!({"cron": "0 0 29 2 *"}));
    assert_eq!(
        fires(&leap, "2026-01-01T00:00:00Z", 1),
        vec!["2028-02-29T00:00:00Z"]
    );
}
