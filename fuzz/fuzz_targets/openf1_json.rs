//! OpenF1 REST bodies: the fast row parsers and the typed decoders take any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::openf1_json(data));
