//! Small helpers the three sources share: bounds-checked little-endian reads of the game's
//! byte layouts, UTF-16LE strings, the wall clock, and rate-limited logging of bad input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a byte layout could not be read. Parsers return it instead of panicking, whatever
/// the bytes are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{what} is {got} bytes, expected {expected}")]
    Size {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what} is {got} bytes, expected at least {expected}")]
    TooShort {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
}

/// A read-only view of a byte layout whose length has been checked: every read is at an
/// offset the caller proved to be inside (`check_len`), and still returns 0 rather than
/// panicking if a layout constant were ever wrong.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&self, offset: usize) -> u8 {
        self.0.get(offset).copied().unwrap_or(0)
    }

    fn word(&self, offset: usize) -> [u8; 4] {
        self.0
            .get(offset..offset + 4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 4])
    }

    pub fn i32(&self, offset: usize) -> i32 {
        i32::from_le_bytes(self.word(offset))
    }

    pub fn f32(&self, offset: usize) -> f32 {
        f32::from_le_bytes(self.word(offset))
    }

    pub fn f32s<const N: usize>(&self, offset: usize) -> [f32; N] {
        std::array::from_fn(|i| self.f32(offset + 4 * i))
    }

    pub fn bool(&self, offset: usize) -> bool {
        self.u8(offset) != 0
    }

    /// A `wchar_t[chars]` UTF-16LE string, up to its first NUL (or the end of the field).
    pub fn utf16(&self, offset: usize, chars: usize) -> String {
        let end = (offset + 2 * chars).min(self.0.len());
        let bytes = self.0.get(offset..end).unwrap_or_default();
        let units = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .take_while(|&unit| unit != 0);
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }
}

/// Exactly `expected` bytes.
pub(crate) fn check_size(
    what: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), LayoutError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(LayoutError::Size {
            what,
            got: bytes.len(),
            expected,
        })
    }
}

/// At least `expected` bytes (pages that grew fields in later game versions).
pub(crate) fn check_len(
    what: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), LayoutError> {
    if bytes.len() >= expected {
        Ok(())
    } else {
        Err(LayoutError::TooShort {
            what,
            got: bytes.len(),
            expected,
        })
    }
}

/// A float the game filled in, or 0 for NaN and infinities (garbage must not travel on).
pub(crate) fn finite(value: f32) -> f32 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// Milliseconds as seconds, `None` for the game's "no time yet" (0 or negative).
pub(crate) fn lap_ms(ms: i32) -> Option<f32> {
    (ms > 0).then(|| ms as f32 / 1000.0)
}

/// Wall clock, ns since the Unix epoch: the event time of live data.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Counts bad input and says which occurrences to log: the first few, then every 1000th,
/// so a flood of garbage cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    count: AtomicU64,
}

impl LogLimiter {
    /// Counts one; returns the running count when this one should be logged.
    pub fn note(&self) -> Option<u64> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        (count <= 5 || count % 1000 == 0).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_stops_at_nul_and_field_end() {
        let mut bytes = vec![0u8; 12];
        for (i, unit) in "monza".encode_utf16().enumerate() {
            bytes[2 * i..2 * i + 2].copy_from_slice(&unit.to_le_bytes());
        }
        let view = Bytes(&bytes);
        assert_eq!(view.utf16(0, 6), "monza");
        assert_eq!(view.utf16(0, 3), "mon");
        assert_eq!(view.utf16(10, 6), "", "a field past the end reads as empty");
        assert_eq!(view.i32(100), 0, "reads outside the slice never panic");
    }

    #[test]
    fn limiter_logs_first_five_then_every_thousandth() {
        let limiter = LogLimiter::default();
        let logged: Vec<u64> = (0..2000).filter_map(|_| limiter.note()).collect();
        assert_eq!(logged, vec![1, 2, 3, 4, 5, 1000, 2000]);
    }

    #[test]
    fn lap_times_and_floats() {
        assert_eq!(lap_ms(0), None);
        assert_eq!(lap_ms(-1), None);
        assert_eq!(lap_ms(83_250), Some(83.25));
        assert_eq!(finite(f32::NAN), 0.0);
        assert_eq!(finite(1.5), 1.5);
    }
}
