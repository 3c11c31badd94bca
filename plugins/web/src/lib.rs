//! Web sinks on shared HTTP servers: `cardputer` (Pocket Pitwall documents and frames) and
//! `rest` (latest records as JSON documents).

use pitwall_api::ComponentSpec;

pub mod cardputer;
pub mod documents;
pub mod rest;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![cardputer::spec(), rest::spec()]
}
