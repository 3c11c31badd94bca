//! MQTT: source `mqtt` (subscribe; messages or light-gate triggers, e.g. Carrera slot-car
//! race control or OpenF1's live stream over TLS) and sink `mqtt` (publish records as JSON
//! or a fixed text such as `GO` at lights out). [`broker`] holds what both share: broker
//! URLs, TLS, credentials, the connection's event loop and the reconnect backoff.

use pitwall_api::ComponentSpec;

pub mod broker;
pub mod sink;
pub mod source;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![source::spec(), sink::spec()]
}
