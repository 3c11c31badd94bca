//! Pipeline files: TOML parsing, interpolation, option decoding, graph validation and the
//! rendering of every diagnostic must never panic, whatever the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pitwall_flow::config;
use pitwall_flow::registry::Registry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = Registry::builtin();
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Err(diagnostics) =
        config::load_text(Path::new("fuzz.toml"), text.to_string(), &registry, &env)
    {
        for diagnostic in diagnostics {
            let _ = diagnostic.render(false);
        }
    }
});
