//! Replays every input the fuzzers have kept through the same entries the `cargo fuzz`
//! targets call (`pitwall_flow::fuzzing`), so a parser change that brings back an old crash,
//! or crashes on any input the fuzzers once found interesting, fails `cargo test` on a
//! stable toolchain with no fuzzer installed.
//!
//! - `fuzz/regressions/<target>/*`: inputs that once crashed a target, one file each, kept
//!   forever (see `fuzz/regressions/README.md`).
//! - `fuzz/seeds/<target>.corpus.gz`: each target's corpus after fuzzing, reduced by
//!   libFuzzer's `-merge=1` to inputs that reach something new (`scripts/fuzz-corpus.py`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use pitwall_flow::fuzzing::{Target, TARGETS};

/// A whole target's inputs, in a debug build on a busy machine: far more than they need.
const PATIENCE: Duration = Duration::from_secs(300);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The inputs packed in a `.corpus.gz`: a varint length, then that many bytes, repeated.
fn unpack(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut inputs = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (mut length, mut shift) = (0usize, 0);
        loop {
            let (&byte, tail) = rest.split_first().expect("a whole varint");
            rest = tail;
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        let (input, tail) = rest.split_at(length);
        inputs.push(input.to_vec());
        rest = tail;
    }
    inputs
}

/// Every kept input of `target`, each with where it came from.
fn inputs_of(target: &Target) -> Vec<(String, Vec<u8>)> {
    let mut inputs = Vec::new();
    let seeds = fuzz_dir()
        .join("seeds")
        .join(format!("{}.corpus.gz", target.name));
    for (i, input) in unpack(&seeds).into_iter().enumerate() {
        inputs.push((format!("{} input #{i}", seeds.display()), input));
    }
    let regressions = fuzz_dir().join("regressions").join(target.name);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        for entry in entries.flatten() {
            let path = entry.path();
            inputs.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    inputs
}

/// Runs every input of `target` on a thread of its own; the inputs that panicked.
fn replay(target: &'static Target, inputs: Vec<(String, Vec<u8>)>) -> Vec<String> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut panicked = Vec::new();
        for (origin, input) in &inputs {
            if std::panic::catch_unwind(|| (target.run)(input)).is_err() {
                let head: String = input.iter().take(48).map(|b| format!("{b:02x}")).collect();
                panicked.push(format!(
                    "{}: {origin} ({} bytes: {head}..)",
                    target.name,
                    input.len()
                ));
            }
        }
        let _ = done.send(panicked);
    });
    finished.recv_timeout(PATIENCE).unwrap_or_else(|_| {
        vec![format!(
            "{}: still running after {PATIENCE:?} (a hang?)",
            target.name
        )]
    })
}

#[test]
fn every_kept_fuzz_input_runs_without_a_panic() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let inputs = inputs_of(target);
        // A corpus that went missing or empty would make this test pass vacuously.
        assert!(
            inputs.len() >= 20,
            "{}: only {} inputs kept",
            target.name,
            inputs.len()
        );
        failures.extend(replay(target, inputs));
    }
    assert!(
        failures.is_empty(),
        "inputs that crash a parser:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_fuzz_target_file_has_an_entry_and_a_seed_corpus() {
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            path.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    files.sort();
    let mut entries: Vec<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    entries.sort();
    assert_eq!(
        files, entries,
        "fuzz/fuzz_targets/ and pitwall_flow::fuzzing::TARGETS differ"
    );
    for name in entries {
        let seeds = fuzz_dir().join("seeds").join(format!("{name}.corpus.gz"));
        assert!(seeds.is_file(), "{} is missing", seeds.display());
    }
}
