//! Golden tests of the diagnostics text: one fixture pipeline per class of mistake, each
//! rendered exactly as `pitwall-flow validate` prints it (without colour).
//!
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test diagnostics`
//! and review the diff.

use std::path::{Path, PathBuf};

use pitwall_flow::config::load_text;
use pitwall_flow::diagnostics::render_all;
use pitwall_flow::registry::Registry;

fn fixtures() -> PathBuf {
    Path::new("tests/fixtures/diagnostics").to_path_buf()
}

/// Only these variables exist for the fixtures, so the output does not depend on the
/// machine's environment.
fn env(name: &str) -> Option<String> {
    (name == "PITWALL_TEST_SET").then(|| "value".to_string())
}

fn check(name: &str, expect_ok: bool) {
    let path = fixtures().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    let registry = Registry::builtin();
    let rendered = match load_text(&path, text, &registry, &env) {
        Ok(pipeline) => {
            assert!(expect_ok, "{name} should not validate");
            render_all(&pipeline.warnings, false)
        }
        Err(diagnostics) => {
            assert!(
                !expect_ok,
                "{name} should validate, got:\n{}",
                render_all(&diagnostics, false)
            );
            render_all(&diagnostics, false)
        }
    };
    let golden = fixtures().join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &rendered).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", golden.display()));
    assert_eq!(rendered, expected, "diagnostics of {name} changed");
}

macro_rules! golden {
    ($($name:ident: $ok:expr,)*) => {
        $(#[test] fn $name() { check(stringify!($name), $ok); })*
    };
}

golden! {
    unknown_type: false,
    wrong_table: false,
    unknown_option: false,
    mistyped_option: false,
    missing_option: false,
    input_names_nothing: false,
    duplicate_id: false,
    cycle: false,
    kind_mismatch: false,
    listener_collision: false,
    route_hijack: false,
    zero_shutdown_timeout: false,
    no_source_no_sink: false,
    missing_env: false,
    syntax_error: false,
    unused_output: true,
    bad_when_full: false,
    many_problems: false,
}

/// A file with several mistakes reports all of them, not just the first.
#[test]
fn every_problem_is_reported_at_once() {
    let path = fixtures().join("many_problems.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let Err(diagnostics) = load_text(&path, text, &Registry::builtin(), &env) else {
        panic!("should not validate");
    };
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.key_path.clone())
        .collect();
    for expected in [
        "sources.f1.sped",
        "transforms.frames.type",
        "sinks.screen.max_clients",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "no error at {expected}: {errors:?}"
        );
    }
    // Every error names a line and column.
    for diagnostic in diagnostics.iter().filter(|d| d.is_error()) {
        assert!(
            diagnostic.location().matches(':').count() >= 2,
            "{}",
            diagnostic
        );
    }
}
