//! Race-control WebSocket frames from an Emperor / ACSM server: any sequence of frames
//! (split on newlines) is applied to one server state without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::emperor_message(data));
