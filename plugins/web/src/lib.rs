//! Web sinks on shared HTTP servers: `cardputer` (Pocket Pitwall documents and frames),
//! `rest` (latest records as JSON documents), `dashboard` (slot-car race control page),
//! `json_ws` (records as JSON over a WebSocket, mapped and filtered) and `race_view` (the
//! live race page: track map, timing tower, race control). `cardputer`, `json_ws` and
//! `race_view` fan out to their clients through the shared [`hub`]; `dashboard` still has a
//! queue per client (its state on connect is worked out at connect time).

use pitwall_api::ComponentSpec;

pub mod cardputer;
mod clients;
pub mod dashboard;
pub mod documents;
mod hub;
pub mod json_ws;
pub mod race_view;
pub mod rest;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        cardputer::spec(),
        rest::spec(),
        dashboard::spec(),
        json_ws::spec(),
        race_view::spec(),
    ]
}
