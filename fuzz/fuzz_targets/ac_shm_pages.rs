//! Assetto Corsa shared-memory pages (physics, graphics, static): any bytes of any length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_assetto::assetto_shm::{parse_graphics, parse_physics, parse_static};

fuzz_target!(|data: &[u8]| {
    let _ = parse_physics(data);
    let _ = parse_graphics(data);
    let _ = parse_static(data);
});
