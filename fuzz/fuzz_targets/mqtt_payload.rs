//! MQTT payloads: decoding as text or JSON and finding a gate's own timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_mqtt::source::{decode_payload, gate_time_ns, PayloadMode};

fuzz_target!(|data: &[u8]| {
    for mode in [PayloadMode::Auto, PayloadMode::Json, PayloadMode::Text] {
        if let Ok(value) = decode_payload(mode, data) {
            let _ = gate_time_ns(&value);
        }
    }
});
