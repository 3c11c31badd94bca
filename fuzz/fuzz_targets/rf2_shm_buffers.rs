//! rFactor 2 shared-memory buffers: the first half of the input is read as a telemetry
//! buffer, the rest as a scoring buffer, and both are joined as the source does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::rf2_shm_buffers(data));
