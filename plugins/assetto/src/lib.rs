//! Assetto Corsa: sources `assetto_grpc` (the Windows bridge's gRPC stream),
//! `assetto_udp` (the game's remote telemetry protocol) and `assetto_shm` (the game's
//! shared-memory pages). All emit the common `car_telemetry` record.

use pitwall_api::ComponentSpec;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![]
}
