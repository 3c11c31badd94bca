//! OpenF1: source `openf1` (cache, replay, live), transform `track_layout`, and the
//! simulated sample-session generator.

use pitwall_api::ComponentSpec;

pub mod race;
pub mod sample;
pub mod source;
pub mod track_layout;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![source::spec(), track_layout::spec()]
}
