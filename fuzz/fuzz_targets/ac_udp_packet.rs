//! Assetto Corsa remote-telemetry UDP datagrams: every parser takes any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_assetto::assetto_udp::{parse_car_info, parse_handshake_reply, parse_lap, parse_request};

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data);
    let _ = parse_handshake_reply(data);
    let _ = parse_car_info(data);
    let _ = parse_lap(data);
});
