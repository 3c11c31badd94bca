//! The log on standard error: one line per event, whatever the event carries. Session ids,
//! topics, driver names and other outside text go into log fields as they came, so a
//! newline in one could forge a log line of its own; the writer escapes control characters
//! inside an event (`\n`, `\r`, `\x07`, ...) and keeps only the newline that ends it.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Log to standard error at `RUST_LOG` (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaped { ansi })
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

/// Makes writers to standard error that escape what could break a line.
#[derive(Clone, Copy)]
struct Escaped {
    /// Colour codes (`ESC[...m`) are the formatter's own on a terminal: keep them.
    ansi: bool,
}

impl<'a> MakeWriter<'a> for Escaped {
    type Writer = EscapingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: io::stderr(),
            ansi: self.ansi,
        }
    }
}

/// Writes each event (one `write` call from the formatter) with its control characters
/// escaped, but for the final newline.
pub struct EscapingWriter<W> {
    inner: W,
    ansi: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, ending) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !body.iter().any(|&b| needs_escape(b, self.ansi)) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b if needs_escape(b, self.ansi) => {
                    line.extend_from_slice(format!("\\x{b:02x}").as_bytes())
                }
                b => line.push(b),
            }
        }
        line.extend_from_slice(ending);
        self.inner.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn needs_escape(b: u8, ansi: bool) -> bool {
    (b < 0x20 && b != b'\t' && !(ansi && b == 0x1b)) || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str, ansi: bool) -> String {
        let mut writer = EscapingWriter {
            inner: Vec::new(),
            ansi,
        };
        writer.write_all(text.as_bytes()).unwrap();
        String::from_utf8(writer.inner).unwrap()
    }

    #[test]
    fn an_outside_newline_cannot_forge_a_log_line() {
        let forged = "WARN rig connected session=rig-1\nERROR admin: all recordings deleted\n";
        assert_eq!(
            escaped(forged, false),
            "WARN rig connected session=rig-1\\nERROR admin: all recordings deleted\n"
        );
        assert_eq!(escaped("bell\x07 and \r\n", false), "bell\\x07 and \\r\n");
        assert_eq!(escaped("plain line\n", false), "plain line\n");
    }

    #[test]
    fn colour_codes_stay_on_a_terminal_only() {
        assert_eq!(
            escaped("\x1b[33mWARN\x1b[0m x\n", true),
            "\x1b[33mWARN\x1b[0m x\n"
        );
        assert_eq!(escaped("\x1b[2J\n", false), "\\x1b[2J\n");
    }
}
