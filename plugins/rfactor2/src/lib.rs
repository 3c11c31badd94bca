//! rFactor 2 and Le Mans Ultimate: source `rfactor2` (the Shared Memory Map Plugin's
//! buffers), emitting the common `car_telemetry` record.
//!
//! - [`layout`]: byte offsets of the plugin's structs (FORMATS.md section 6);
//! - [`parse`]: pure parsers over byte slices (no I/O, no panics on any input);
//! - [`snapshot`]: consistent copies of a buffer another process rewrites (the version-block
//!   protocol), from files or, on Windows, the named mappings;
//! - [`join`]: telemetry joined to scoring by `mID`, as `CarTelemetry`;
//! - [`rfactor2`]: the source component.

use pitwall_api::ComponentSpec;

pub mod join;
pub mod layout;
#[cfg(windows)]
pub mod mapping;
pub mod parse;
pub mod rfactor2;
pub mod snapshot;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![rfactor2::spec()]
}
