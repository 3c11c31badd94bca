//! Assetto Corsa remote-telemetry UDP datagrams: every parser takes any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::ac_udp_packet(data));
