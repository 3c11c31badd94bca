//! MQTT payloads: decoding as text or JSON and finding a gate's own timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::mqtt_payload(data));
