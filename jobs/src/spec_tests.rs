use super::*;
use crate::schedule::When;
use crate::Kind;
use serde_json::json;

fn sql_job() -> Value {
    json!({
        "name": "failed logins",
        "workspace": "security",
        "sql": "CREATE TABLE IF NOT EXISTS x AS SELECT 1;\nSELECT * FROM logins WHERE n >= $min_fails",
        "parameters": {"min_fails": 5}
    })
}

fn notebook_doc() -> Value {
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "tarn-sql"}},
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [],
             "source": "day = '2026-01-01'\nmin_fails = 3\n"},
            {"cell_type": "code", "metadata": {}, "outputs": [],
             "source": "SELECT * FROM logins WHERE day = $day AND n >= $min_fails"}
        ]
    })
}

fn parse(v: &Value) -> Result<JobSpec, Error> {
    JobSpec::from_json(v)
}

#[test]
fn minimal_sql_job_gets_defaults() {
    let spec = parse(&sql_job()).unwrap();
    assert_eq!(spec.name, "failed logins");
    assert_eq!(spec.description, "");
    assert_eq!(spec.schedule, None);
    assert_eq!(spec.size, "");
    assert_eq!(spec.vcores, 0);
    assert_eq!(spec.timeout, None);
    assert_eq!(spec.retry, RetryPolicy::default());
    assert_eq!(spec.retry.attempts, 1);
    assert_eq!(spec.retry.backoff, Duration::from_secs(30));
    assert!(spec.enabled);
    match spec.work().unwrap() {
        Work::Sql { statements } => {
            assert_eq!(statements.len(), 2);
            assert_eq!(statements[1].line, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_job_round_trips() {
    let v = json!({
        "name": "nightly-load v2.1",
        "workspace": "security",
        "description": "loads the night's logins",
        "notebook": notebook_doc(),
        "parameters": {"min_fails": 7},
        "schedule": {"daily": "02:30", "timezone": "Europe/Berlin", "catch_up": "skip",
                     "overlap": "queue"},
        "size": "large",
        "vcores": 16,
        "timeout": "8h",
        "retry": {"attempts": 3, "backoff": "1m 30s"},
        "enabled": false
    });
    let spec = parse(&v).unwrap();
    assert_eq!(spec.timeout, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(spec.retry.backoff, Duration::from_secs(90));
    assert_eq!(
        spec.schedule.as_ref().unwrap().when,
        When::Daily("02:30".into())
    );
    let out = serde_json::to_value(&spec).unwrap();
    assert_eq!(out, v);
    assert_eq!(parse(&out).unwrap(), spec);
    match spec.work().unwrap() {
        Work::Notebook(nb) => assert_eq!(nb.defaults().unwrap().len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeout_accepts_humantime_forms() {
    for (text, secs) in [("90s", 90), ("30m", 1800), ("1h 30m", 5400)] {
        let mut v = sql_job();
        v["timeout"] = json!(text);
        assert_eq!(parse(&v).unwrap().timeout, Some(Duration::from_secs(secs)));
    }
    let mut v = sql_job();
    v["timeout"] = json!("0s");
    assert_eq!(parse(&v).unwrap_err(), Error::ZeroTimeout);
    v["timeout"] = json!("forever");
    assert!(matches!(parse(&v).unwrap_err(), Error::Malformed { .. }));
}

#[test]
fn name_rules() {
    for ok in ["a", "nightly load", "x_y-z.1", &"n".repeat(128)] {
        let mut v = sql_job();
        v["name"] = json!(ok);
        parse(&v).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "",
        " lead",
        "trail ",
        "a/b",
        "ä",
        "tab\tname",
        &"n".repeat(129),
    ] {
        let mut v = sql_job();
        v["name"] = json!(bad);
        let err = parse(&v).unwrap_err();
        assert_eq!(err, Error::JobName { name: bad.into() }, "{bad}");
        assert_eq!(err.kind(), Kind::InvalidJob);
    }
}

#[test]
fn work_rules() {
    let mut v = sql_job();
    v["workspace"] = json!(" ");
    assert_eq!(parse(&v).unwrap_err(), Error::EmptyWorkspace);

    let mut v = sql_job();
    v["notebook"] = notebook_doc();
    assert_eq!(parse(&v).unwrap_err(), Error::BothWork);

    let mut v = sql_job();
    v.as_object_mut().unwrap().remove("sql");
    assert_eq!(parse(&v).unwrap_err(), Error::NoWork);

    let mut v = sql_job();
    v["sql"] = json!("  -- nothing\n; /* here */ ;");
    v["parameters"] = json!({});
    assert_eq!(parse(&v).unwrap_err(), Error::BlankSql);

    let mut v = sql_job();
    v.as_object_mut().unwrap().remove("sql");
    v["notebook"] = json!({"nbformat": 3, "cells": []});
    let err = parse(&v).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidNotebook);

    let mut v = sql_job();
    v["retry"] = json!({"attempts": 11});
    assert_eq!(
        parse(&v).unwrap_err(),
        Error::RetryAttempts { attempts: 11 }
    );
    v["retry"] = json!({"attempts": 0});
    assert_eq!(parse(&v).unwrap_err(), Error::RetryAttempts { attempts: 0 });
    v["retry"] = json!({"attempts": 10});
    assert_eq!(parse(&v).unwrap().retry.backoff, Duration::from_secs(30));
}

#[test]
fn parameter_rules() {
    let mut v = sql_job();
    v["parameters"] = json!({"min-fails": 5});
    let err = parse(&v).unwrap_err();
    assert_eq!(
        err,
        Error::ParamName {
            name: "min-fails".into()
        }
    );
    assert_eq!(err.kind(), Kind::InvalidParameter);

    let mut v = sql_job();
    v["parameters"] = json!({});
    let err = parse(&v).unwrap_err();
    assert_eq!(
        err,
        Error::Unbound {
            name: "min_fails".into(),
            declared: "none".into()
        }
    );

    let mut v = sql_job();
    v["parameters"] = json!({"min_fails": [1, 2]});
    let err = parse(&v).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidParameter);
    assert!(
        err.to_string().contains("\"min_fails\" is an array"),
        "{err}"
    );

    // Notebook overrides must name parameters the notebook declares.
    let v = json!({"name": "n", "workspace": "w", "notebook": notebook_doc(),
                   "parameters": {"min_fail": 1}});
    let err = parse(&v).unwrap_err();
    assert_eq!(
        err,
        Error::Undeclared {
            name: "min_fail".into(),
            declared: "day, min_fails".into()
        }
    );
    // A SQL notebook cell may only use declared placeholders.
    let mut doc = notebook_doc();
    doc["cells"][1]["source"] = json!("SELECT $limit");
    let v = json!({"name": "n", "workspace": "w", "notebook": doc});
    assert!(matches!(parse(&v).unwrap_err(), Error::Unbound { .. }));
}

#[test]
fn unknown_fields_and_bad_shapes_are_refused() {
    let mut v = sql_job();
    v["nmae"] = json!("x");
    let err = parse(&v).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
    assert!(
        err.to_string().contains("the fields are name, workspace"),
        "{err}"
    );
    assert_eq!(err.kind(), Kind::InvalidJob);

    let mut v = sql_job();
    v["retry"] = json!({"tries": 2});
    assert!(matches!(parse(&v).unwrap_err(), Error::Malformed { .. }));

    let mut v = sql_job();
    v["schedule"] = json!({"daily": "02:30", "weekly": {"days": ["mon"], "at": "01:00"}});
    let err = parse(&v).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidSchedule);
    assert!(matches!(err, Error::ScheduleKinds { .. }));

    let mut v = sql_job();
    v["schedule"] = json!({"daily": "25:00"});
    assert_eq!(parse(&v).unwrap_err().kind(), Kind::InvalidSchedule);
}

#[test]
fn schedule_frequency_is_the_callers_setting() {
    let mut v = sql_job();
    v["schedule"] = json!({"every": "10s"});
    let spec = parse(&v).unwrap();
    let err = spec.validate_with(Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, Error::TooFrequent { .. }));
    spec.validate_with(Duration::from_secs(1)).unwrap();
}

#[test]
fn patch_merges_at_the_top_level() {
    let mut v = sql_job();
    v["schedule"] = json!({"daily": "02:30"});
    v["description"] = json!("old");
    v["enabled"] = json!(false);
    let spec = parse(&v).unwrap();

    let patched = spec
        .patch(&json!({"description": "new", "schedule": {"every": "1h"}, "enabled": null}))
        .unwrap();
    assert_eq!(patched.description, "new");
    assert_eq!(
        patched.schedule.unwrap().when,
        When::Every(Duration::from_secs(3600))
    );
    assert!(patched.enabled, "null resets to the default");
    assert_eq!(patched.sql, spec.sql);

    let unscheduled = spec
        .patch(&json!({"schedule": null, "description": null}))
        .unwrap();
    assert_eq!(unscheduled.schedule, None);
    assert_eq!(unscheduled.description, "");

    // Switching from sql to a notebook takes resetting sql in the same patch.
    let err = spec
        .patch(&json!({"notebook": notebook_doc()}))
        .unwrap_err();
    assert_eq!(err, Error::BothWork);
    let nb = spec
        .patch(&json!({"notebook": notebook_doc(), "sql": null, "parameters": null}))
        .unwrap();
    assert!(matches!(nb.work().unwrap(), Work::Notebook(_)));
    assert!(nb.parameters.is_empty());

    assert_eq!(spec.patch(&json!({})).unwrap(), spec);
}

#[test]
fn patch_refusals() {
    let spec = parse(&sql_job()).unwrap();
    assert_eq!(spec.patch(&json!([1])).unwrap_err(), Error::PatchNotObject);
    assert_eq!(
        spec.patch(&json!({"colour": "red"})).unwrap_err(),
        Error::PatchUnknownField {
            field: "colour".into()
        }
    );
    let err = spec.patch(&json!({"name": null})).unwrap_err();
    assert_eq!(
        err,
        Error::PatchRequired {
            field: "name".into()
        }
    );
    assert_eq!(err.kind(), Kind::InvalidJob);
    let err = spec.patch(&json!({"parameters": {}})).unwrap_err();
    assert!(matches!(err, Error::Unbound { .. }), "{err}");
    let err = spec.patch(&json!({"vcores": "many"})).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

#[test]
fn every_error_has_a_fix() {
    // Each message says what to do, after the cause.
    let errors = [
        Error::NoWork,
        Error::BlankSql,
        Error::EmptyWorkspace,
        Error::NoScheduleKind,
        Error::NoWeekdays,
        Error::ZeroInterval,
        Error::NoCodeCell,
        Error::PatchNotObject,
    ];
    for err in errors {
        let text = err.to_string();
        assert!(text.contains("; "), "{text}");
    }
}

#[test]
fn a_kql_job_is_one_query_without_parameters() {
    let v = json!({"name": "kql", "workspace": "security",
                   "kql": "let n = 3;\nSigninLogs\n| take n"});
    let spec = parse(&v).unwrap();
    assert_eq!(
        spec.work().unwrap(),
        Work::Kql {
            query: "let n = 3;\nSigninLogs\n| take n".into()
        }
    );

    let mut both = v.clone();
    both["sql"] = json!("SELECT 1");
    assert_eq!(parse(&both).unwrap_err(), Error::BothWork);

    let mut blank = v.clone();
    blank["kql"] = json!("  // nothing here\n\n");
    assert_eq!(parse(&blank).unwrap_err(), Error::BlankKql);

    let mut params = v.clone();
    params["parameters"] = json!({"min_fails": 5});
    let err = parse(&params).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidParameter);
    assert!(err.to_string().contains("min_fails"), "{err}");
}

#[test]
fn kql_in_a_sql_notebook_needs_no_placeholder_values() {
    // `$left` in a KQL join is no SQL placeholder.
    let mut doc = notebook_doc();
    doc["cells"][1]["source"] = json!(
        "%%kql\nSigninLogs | join (IdentityInfo) on $left.UserPrincipalName == $right.AccountUPN"
    );
    doc["cells"]
        .as_array_mut()
        .unwrap()
        .push(json!({"cell_type": "code", "metadata": {}, "outputs": [],
                     "source": "SELECT 1;\n%kql SigninLogs | where $left.x == 1\nSELECT $day"}));
    let v = json!({"name": "nb", "workspace": "security", "notebook": doc});
    parse(&v).unwrap();
    // A `$name` in the SQL of the same cell still needs a value.
    let mut doc = notebook_doc();
    doc["cells"][1]["source"] = json!("%kql SigninLogs | take 1\nSELECT $missing");
    let v = json!({"name": "nb", "workspace": "security", "notebook": doc});
    assert_eq!(parse(&v).unwrap_err().kind(), Kind::InvalidParameter);
}
