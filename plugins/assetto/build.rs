//! Generates the `telemetry.v1.TelemetryIngest` gRPC service (server and client) with pure-Rust
//! tools: protox parses the .proto, tonic-prost-build writes the code, so no system `protoc` is
//! needed. The message types are not generated again: they are `pitwall_api::telemetry::proto`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = proto_root.join("telemetry/v1/telemetry.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&proto_root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".telemetry.v1", "::pitwall_api::telemetry::proto")
        // Same wire format as tonic-prost, faster on tonic's buffers (see src/codec.rs).
        .codec_path("crate::codec::SliceCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
