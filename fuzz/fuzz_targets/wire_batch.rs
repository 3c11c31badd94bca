//! Record batches from another pitwall-flow instance (MQTT `payload = "protobuf"`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::wire_batch(data));
