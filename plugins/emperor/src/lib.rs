//! Assetto Corsa Server Manager / Emperor Servers race control as a pitwall-flow source.
//!
//! One component type, [`source`] `emperor`: it follows a server's race-control WebSocket
//! and emits sessions, connections, standings, laps, car positions, collisions and chat
//! (FORMATS.md section 4). It is split the way small protocol clients usually are:
//!
//! - [`protocol`]: serde types of the envelope and payloads, tolerant of what the server and
//!   its fork send (unknown fields, numbers as strings, nulls);
//! - [`state`]: the server's state as its own UI keeps it, and the records each message
//!   turns into; pure and fast (see `benches/parse.rs`);
//! - [`source`]: the WebSocket I/O loop, reconnection with backoff, shutdown.

use pitwall_api::ComponentSpec;

pub mod protocol;
pub mod source;
pub mod state;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![source::spec()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_source_is_listed_with_a_schema() {
        let specs = super::components();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].type_name, "emperor");
        assert_eq!(specs[0].role, pitwall_api::Role::Source);
        let mut generator = schemars::SchemaGenerator::default();
        assert!(!(specs[0].schema)(&mut generator).as_value().is_null());
        let config = (specs[0].parse)(
            toml::from_str("url = \"ws://127.0.0.1:1/api/race-control\"\ncoordinates = \"map\"")
                .unwrap(),
        )
        .unwrap();
        assert!(config.check().is_empty());
        let error =
            (specs[0].parse)(toml::from_str("url = \"ws://x\"\ncoordinate = \"map\"").unwrap())
                .unwrap_err();
        assert!(error.to_string().contains("coordinate"), "{error}");
    }
}
