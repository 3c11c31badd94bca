//! Web sinks on shared HTTP servers: `cardputer` (Pocket Pitwall documents and frames),
//! `rest` (latest records as JSON documents), `dashboard` (slot-car race control page) and
//! `json_ws` (records as JSON over a WebSocket, mapped and filtered).

use pitwall_api::ComponentSpec;

pub mod cardputer;
mod clients;
pub mod dashboard;
pub mod documents;
pub mod json_ws;
pub mod rest;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        cardputer::spec(),
        rest::spec(),
        dashboard::spec(),
        json_ws::spec(),
    ]
}
