//! `.pb.gz` recordings: any bytes, compressed or not, end the read with frames or a
//! reported end, never a panic or an unbounded allocation; every frame decodes or errs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::pbgz_stream(data));
