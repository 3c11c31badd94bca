//! The real binary run as a command-line tool, for the tests of its one-shot commands.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// `pitwall-flow ARGS...`, waited for, with its output.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// Output bytes as text, for assertions and their messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
