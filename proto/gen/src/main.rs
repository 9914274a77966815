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
    tonic_prost_build::configure()
        .out_dir(&out)
        .build_client(true)
        .build_server(true)
        .compile_protos(&[root.join("proto/tarn.proto")], &[root.join("proto")])?;
    Ok(())
}
