//! Transforms over positions and time: `resample`, `bounds`, `project`, `decimate`, `filter`.

use pitwall_api::ComponentSpec;

pub mod bounds;
pub mod decimate;
pub mod filter;
pub mod keys;
pub mod project;
pub mod resample;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        resample::spec(),
        bounds::spec(),
        project::spec(),
        decimate::spec(),
        filter::spec(),
    ]
}
