//! Assetto Corsa: sources `assetto_grpc` (the Windows bridge's gRPC stream),
//! `assetto_udp` (the game's remote telemetry protocol) and `assetto_shm` (the game's
//! shared-memory pages). All emit the common `car_telemetry` record.

use pitwall_api::ComponentSpec;

pub mod assetto_grpc;
pub mod assetto_shm;
pub mod assetto_udp;
pub mod codec;
mod util;

pub use util::LayoutError;

/// The `telemetry.v1.TelemetryIngest` service: server (used by `assetto_grpc`) and client
/// (for tests, benchmarks and anything that wants to stream frames to pitwall-flow).
/// The messages are [`pitwall_api::telemetry::proto`].
pub mod service {
    tonic::include_proto!("telemetry.v1");
}

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        assetto_grpc::spec(),
        assetto_udp::spec(),
        assetto_shm::spec(),
    ]
}
