//! rFactor 2 shared-memory buffers: the first half of the input is read as a telemetry
//! buffer, the rest as a scoring buffer, and both are joined as the source does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_rfactor2::parse::{parse_scoring, parse_telemetry, version_block};

fuzz_target!(|data: &[u8]| {
    let (telemetry, scoring) = data.split_at(data.len() / 2);
    let _ = version_block(data);
    let _ = parse_telemetry(data);
    let _ = parse_scoring(data);
    let _ = parse_telemetry(telemetry);
    let _ = parse_scoring(scoring);
});
