//! OpenF1 REST bodies: the fast row parsers and the typed decoders take any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_openf1::source::rows;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rows::is_no_results(text);
    let _ = rows::raw_rows(text);
    let mut skipped = rows::Skipped::default();
    let _ = rows::car_samples(text, &mut skipped);
});
