//! Race-control WebSocket frames from an Emperor / ACSM server: any sequence of frames
//! (split on newlines) is applied to one server state without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_emperor::state::{RaceControl, StateOptions};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut state = RaceControl::new(StateOptions::default());
    let mut out = Vec::new();
    for (i, frame) in text.split('\n').enumerate() {
        let _ = state.apply(frame, i as i64 * 1_000_000, &mut out);
    }
});
