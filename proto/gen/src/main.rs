//! Regenerates `proto/src/generated` from `proto/proto/*.proto`.
//!
//! Run `cargo run -p tarn-proto-gen` from the workspace root after editing a
//! `.proto` file. The output is checked in so that ordinary builds need no
//! `protoc`; CI regenerates and fails on any difference.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("src/generated");
    std::fs::create_dir_all(&out)?;
    // The REST API shows these messages as JSON: serde derives on the
    // generated types, so a field added to the proto shows up there too
    // instead of waiting for a hand-written mapping. Enums show as labels.
    let mut config = tonic_prost_build::configure();
    for message in [
        "PoolInfo",
        "GetPoolsResponse",
        "LeaseInfo",
        "JobRunInfo",
        "JobInfo",
    ] {
        config =
            config.type_attribute(format!(".tarn.v1.{message}"), "#[derive(serde::Serialize)]");
    }
    config = config
        .field_attribute(".tarn.v1.PoolInfo.pool", "#[serde(skip)]")
        .field_attribute(
            ".tarn.v1.LeaseInfo.pool",
            "#[serde(serialize_with = \"crate::json::pool_label\")]",
        )
        .field_attribute(
            ".tarn.v1.JobRunInfo.status",
            "#[serde(serialize_with = \"crate::json::run_state_label\")]",
        );
    // Fields that carry JSON documents show as the documents, under the
    // name without `_json`.
    for (message, field) in [
        ("JobRunInfo", "parameters"),
        ("JobRunInfo", "result"),
        ("JobInfo", "spec"),
        ("JobInfo", "grants"),
    ] {
        config = config.field_attribute(
            format!(".tarn.v1.{message}.{field}_json"),
            format!("#[serde(rename = \"{field}\", serialize_with = \"crate::json::embedded\")]"),
        );
    }
    config
        .out_dir(&out)
        .build_client(true)
        .build_server(true)
        .compile_protos(&[root.join("proto/tarn.proto")], &[root.join("proto")])?;
    Ok(())
}
