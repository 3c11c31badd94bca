//! Record batches from another pitwall-flow instance (MQTT `payload = "protobuf"`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_api::wire::decode_batch;

fuzz_target!(|data: &[u8]| {
    let _ = decode_batch(data);
});
