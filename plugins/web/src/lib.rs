//! Web sinks on shared HTTP servers: `cardputer` (Pocket Pitwall documents and frames),
//! `rest` (latest records as JSON documents) and `dashboard` (slot-car race control page).

use pitwall_api::ComponentSpec;

pub mod cardputer;
mod clients;
pub mod dashboard;
pub mod documents;
pub mod rest;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![cardputer::spec(), rest::spec(), dashboard::spec()]
}
