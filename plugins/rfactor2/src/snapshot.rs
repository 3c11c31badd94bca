//! Consistent copies of a buffer another process keeps rewriting: the plugin's version-block
//! protocol against torn reads (FORMATS.md section 6).
//!
//! The writer increments `mVersionUpdateBegin`, rewrites the buffer, then sets
//! `mVersionUpdateEnd` to the same value. One [`VersionedCopy::try_once`] is:
//!
//! 1. read the version block; if `Begin != End` a write is in progress: [`Attempt::Torn`];
//! 2. if `Begin` equals the version of the last good copy: [`Attempt::Unchanged`], and
//!    nothing is copied;
//! 3. copy the whole buffer into a scratch area;
//! 4. read the version block again; if it differs from step 1 (or from the copy's own
//!    first eight bytes), the writer touched the buffer meanwhile: [`Attempt::Torn`];
//! 5. otherwise the scratch area becomes the current copy: [`Attempt::Fresh`].
//!
//! A torn attempt never replaces the last good copy. The caller retries a torn attempt after
//! about a millisecond, a few times, then gives up until its next poll.
//!
//! Where the bytes come from is a [`SharedBuffer`]: a file a bridge exposes (on Linux, under
//! `/dev/shm`), or on Windows the plugin's named mapping itself.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::layout::VERSION_BLOCK;
use crate::parse::{version_block, VersionBlock};

/// Bytes another process writes, read at an offset.
pub trait SharedBuffer: Send {
    /// Read up to `out.len()` bytes at `offset`; fewer at the end of the buffer.
    fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize>;

    /// Forget any open handle: the next read opens the buffer afresh (the bridge or the game
    /// may have recreated it).
    fn reopen(&mut self) {}

    /// Where the bytes come from, for messages.
    fn describe(&self) -> String;
}

/// The outcome of one attempt at a consistent copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A new consistent copy of this version is in [`VersionedCopy::data`].
    Fresh { version: u32 },
    /// The version is the one already copied: nothing new.
    Unchanged,
    /// The writer was busy: try again shortly.
    Torn,
}

/// The last consistent copy of one buffer, and the machinery to refresh it.
#[derive(Debug)]
pub struct VersionedCopy {
    size: usize,
    last_version: Option<u32>,
    scratch: Vec<u8>,
    data: Vec<u8>,
}

impl VersionedCopy {
    /// Copies at most `size` bytes (the struct's size; a bridge's file may be longer).
    pub fn new(size: usize) -> Self {
        Self {
            size: size.max(VERSION_BLOCK),
            last_version: None,
            scratch: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The last consistent copy (empty before the first).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The version of the last consistent copy.
    pub fn last_version(&self) -> Option<u32> {
        self.last_version
    }

    /// One attempt; see the module docs. An error is an I/O error of the source, or a
    /// buffer shorter than its version block (`UnexpectedEof`).
    pub fn try_once(&mut self, source: &mut dyn SharedBuffer) -> io::Result<Attempt> {
        let before = read_block(source)?;
        if !before.is_stable() {
            return Ok(Attempt::Torn);
        }
        if self.last_version == Some(before.begin) {
            return Ok(Attempt::Unchanged);
        }
        self.scratch.resize(self.size, 0);
        let copied = read_full(source, 0, &mut self.scratch)?;
        self.scratch.truncate(copied);
        let after = read_block(source)?;
        if after != before || version_block(&self.scratch) != Some(before) {
            return Ok(Attempt::Torn);
        }
        std::mem::swap(&mut self.scratch, &mut self.data);
        self.last_version = Some(before.begin);
        Ok(Attempt::Fresh {
            version: before.begin,
        })
    }

    /// Up to `tries` attempts, sleeping `pause` after each torn one (for threads; the
    /// source component does the same with an async sleep).
    pub fn read_blocking(
        &mut self,
        source: &mut dyn SharedBuffer,
        tries: usize,
        pause: Duration,
    ) -> io::Result<Attempt> {
        for _ in 0..tries.max(1) {
            match self.try_once(source)? {
                Attempt::Torn => std::thread::sleep(pause),
                done => return Ok(done),
            }
        }
        Ok(Attempt::Torn)
    }
}

fn read_block(source: &mut dyn SharedBuffer) -> io::Result<VersionBlock> {
    let mut header = [0u8; VERSION_BLOCK];
    let got = read_full(source, 0, &mut header)?;
    version_block(&header[..got]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} is {got} bytes long, shorter than its version block",
                source.describe()
            ),
        )
    })
}

/// Read until `out` is full or the buffer ends; the number of bytes read.
fn read_full(source: &mut dyn SharedBuffer, offset: usize, out: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < out.len() {
        match source.read_at(offset + filled, &mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A buffer exposed as a file (a bridge under `/dev/shm`, or a test's file). Opened on first
/// read; a missing file reads as `NotFound` until it appears.
#[derive(Debug)]
pub struct FileBuffer {
    path: PathBuf,
    file: Option<File>,
}

impl FileBuffer {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SharedBuffer for FileBuffer {
    fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
        }
        let Some(file) = self.file.as_ref() else {
            return Ok(0);
        };
        let result = positioned_read(file, offset as u64, out);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    fn reopen(&mut self) {
        self.file = None;
    }

    fn describe(&self) -> String {
        format!("`{}`", self.path.display())
    }
}

#[cfg(unix)]
fn positioned_read(file: &File, offset: u64, out: &mut [u8]) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, out, offset)
}

#[cfg(windows)]
fn positioned_read(file: &File, offset: u64, out: &mut [u8]) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, out, offset)
}

#[cfg(not(any(unix, windows)))]
fn positioned_read(_file: &File, _offset: u64, _out: &mut [u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positioned reads are not supported on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Called before every read, with the read's offset: lets a test write mid-copy.
    type OnRead = Box<dyn FnMut(usize, &mut Vec<u8>) + Send>;

    /// An in-memory buffer whose reads can be interleaved with writes by the test.
    struct Scripted {
        bytes: Vec<u8>,
        on_read: OnRead,
    }

    impl SharedBuffer for Scripted {
        fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
            (self.on_read)(offset, &mut self.bytes);
            let available = self.bytes.get(offset..).unwrap_or(&[]);
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            Ok(n)
        }

        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    fn buffer(begin: u32, end: u32, fill: u8) -> Vec<u8> {
        let mut bytes = vec![fill; 64];
        bytes[0..4].copy_from_slice(&begin.to_le_bytes());
        bytes[4..8].copy_from_slice(&end.to_le_bytes());
        bytes
    }

    #[test]
    fn a_stable_buffer_is_copied_once_per_version() {
        let mut source = Scripted {
            bytes: buffer(3, 3, 7),
            on_read: Box::new(|_, _| {}),
        };
        let mut copy = VersionedCopy::new(64);
        assert_eq!(
            copy.try_once(&mut source).unwrap(),
            Attempt::Fresh { version: 3 }
        );
        assert_eq!(copy.data(), &buffer(3, 3, 7)[..]);
        assert_eq!(copy.try_once(&mut source).unwrap(), Attempt::Unchanged);
        source.bytes = buffer(4, 4, 9);
        assert_eq!(
            copy.try_once(&mut source).unwrap(),
            Attempt::Fresh { version: 4 }
        );
        assert_eq!(copy.data()[8], 9);
    }

    #[test]
    fn a_write_in_progress_is_torn_and_keeps_the_last_copy() {
        let mut source = Scripted {
            bytes: buffer(1, 1, 1),
            on_read: Box::new(|_, _| {}),
        };
        let mut copy = VersionedCopy::new(64);
        copy.try_once(&mut source).unwrap();
        source.bytes = buffer(2, 1, 2);
        assert_eq!(copy.try_once(&mut source).unwrap(), Attempt::Torn);
        assert_eq!(copy.data(), &buffer(1, 1, 1)[..], "last good copy kept");
        assert_eq!(copy.last_version(), Some(1));
    }

    #[test]
    fn a_write_that_starts_during_the_copy_is_torn() {
        // The writer starts version 6 right after the reader checked the header (the second
        // read is the copy).
        let mut reads = 0;
        let mut source = Scripted {
            bytes: buffer(5, 5, 5),
            on_read: Box::new(move |_, bytes| {
                reads += 1;
                if reads == 2 {
                    bytes[0..4].copy_from_slice(&6u32.to_le_bytes());
                    bytes[8] = 0xEE;
                }
            }),
        };
        let mut copy = VersionedCopy::new(64);
        assert_eq!(copy.try_once(&mut source).unwrap(), Attempt::Torn);
        assert!(copy.data().is_empty(), "nothing torn was kept");
        // A write that starts and finishes between the copy and the second header read
        // changes the version: also torn.
        let mut reads = 0;
        let mut source = Scripted {
            bytes: buffer(5, 5, 5),
            on_read: Box::new(move |_, bytes| {
                reads += 1;
                if reads == 3 {
                    *bytes = buffer(6, 6, 6);
                }
            }),
        };
        assert_eq!(copy.try_once(&mut source).unwrap(), Attempt::Torn);
        assert_eq!(
            copy.try_once(&mut source).unwrap(),
            Attempt::Fresh { version: 6 }
        );
    }

    #[test]
    fn a_buffer_shorter_than_its_version_block_is_an_error() {
        let mut source = Scripted {
            bytes: vec![1, 2, 3],
            on_read: Box::new(|_, _| {}),
        };
        let error = VersionedCopy::new(64).try_once(&mut source).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_missing_file_is_not_found_until_it_appears() {
        let dir = std::env::temp_dir().join(format!("rf2-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("buffer");
        let _ = std::fs::remove_file(&path);
        let mut source = FileBuffer::new(&path);
        let mut copy = VersionedCopy::new(64);
        let error = copy.try_once(&mut source).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        std::fs::write(&path, buffer(9, 9, 4)).unwrap();
        assert_eq!(
            copy.try_once(&mut source).unwrap(),
            Attempt::Fresh { version: 9 }
        );
        assert_eq!(copy.data().len(), 64);
        // Windows removes no folder holding a file still open.
        drop(source);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
