//! Generic file components: source `file` (NDJSON replay), sinks `file` (NDJSON, rotating)
//! and `console` (JSON lines to stdout).

use pitwall_api::ComponentSpec;

pub mod console;
pub mod file_sink;
pub mod file_source;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![console::spec(), file_sink::spec(), file_source::spec()]
}
