//! Pipeline files: TOML parsing, interpolation, option decoding, graph validation and the
//! rendering of every diagnostic must never panic, whatever the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::pipeline_file(data));
