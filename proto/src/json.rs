//! How the enums of messages the REST API shows as JSON are written: as
//! their labels (`"interactive"`, `"running"`), not their numbers.

use crate::{JobRunState, Pool};

/// A `Pool` field as its label.
pub fn pool_label<S: serde::Serializer>(pool: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        Pool::try_from(*pool)
            .map(Pool::label)
            .unwrap_or("unspecified"),
    )
}

/// A `JobRunState` field as its label.
pub fn run_state_label<S: serde::Serializer>(state: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        JobRunState::try_from(*state)
            .unwrap_or(JobRunState::Unspecified)
            .label(),
    )
}

/// A field holding a JSON document as the document itself (an empty
/// string as `null`, text that is not JSON as a string).
pub fn embedded<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    if text.is_empty() {
        return s.serialize_none();
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

#[cfg(test)]
mod tests {
    use crate::{JobRunInfo, JobRunState, LeaseInfo, Pool};

    #[test]
    fn enums_show_as_labels_and_every_field_is_there() {
        let lease = LeaseInfo {
            lease_id: "l".into(),
            pool: Pool::Job as i32,
            vcores: 8,
            ..Default::default()
        };
        let v = serde_json::to_value(&lease).unwrap();
        assert_eq!(v["pool"], "job");
        assert_eq!(v["vcores"], 8);
        assert!(v.get("ttl_seconds").is_some());
        let run = JobRunInfo {
            status: JobRunState::TimedOut as i32,
            result_json: r#"{"statements":[{"rows":3}]}"#.into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v["status"], "timed_out");
        // JSON documents show as documents, under their short name.
        assert_eq!(v["result"]["statements"][0]["rows"], 3);
        assert!(v["parameters"].is_null());
        assert!(v.get("result_json").is_none());
        let unknown = JobRunInfo {
            status: 99,
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&unknown).unwrap()["status"], "unknown");
    }
}
