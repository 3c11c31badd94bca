//! Slot-car race control: `race_control` (start lights, lap timing with bounce rejection,
//! race summary), the brain behind the `dashboard` sink of `pitwall-web`.

use pitwall_api::ComponentSpec;

pub mod race_control;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![race_control::spec()]
}
