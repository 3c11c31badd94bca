//! Assetto Corsa shared-memory pages (physics, graphics, static): any bytes of any length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pitwall_flow::fuzzing::ac_shm_pages(data));
