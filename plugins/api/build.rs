//! Generates the `telemetry.v1` and `pitwall.v1` protobuf messages from `proto/` with pure-Rust tools
//! (protox parses the .proto, prost-build writes the code): no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        proto_root.join("telemetry/v1/telemetry.proto"),
        proto_root.join("pitwall/v1/records.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
