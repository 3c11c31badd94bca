//! rFactor 2 and Le Mans Ultimate: source `rfactor2` (the Shared Memory Map Plugin's
//! buffers), emitting the common `car_telemetry` record.

use pitwall_api::ComponentSpec;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![]
}
