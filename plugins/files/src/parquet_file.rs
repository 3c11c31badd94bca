//! One Parquet file of the `parquet` sink, written row group by row group, that a write
//! error (a full disk, a failing device) does not turn into garbage.
//!
//! A Parquet file is only readable once its footer (the metadata naming every row group)
//! is written at its end. The arrow writer writes the footer when it closes, so a file
//! whose writes fail half-way through a row group would be left without one: every row in
//! it lost. This wrapper keeps what is needed to give such a file a footer anyway:
//!
//! - After every row group it notes how long the file is (`committed_len`) and how many
//!   complete row groups it holds; the row groups' metadata are the arrow writer's own.
//! - It keeps room for that footer: on Linux the blocks after the file's end are
//!   preallocated (`fallocate` with `FALLOC_FL_KEEP_SIZE`, not changing the file's size), so
//!   the write that fills the disk first fills that room, and the footer can then take it
//!   back. Without it, a disk that had less free space than a footer when the failing row
//!   group began would leave no room for one.
//! - When a write fails ([`ParquetFile::salvage`]), the writer is abandoned (its buffered
//!   bytes are never written), the footer of the complete row groups is written at
//!   `committed_len` over the partial row group, and the file is cut there and fsynced: the
//!   file stays readable with every row group written before the failure. If even that
//!   fails, the file is cut back to its complete row groups and renamed `*.parquet.failed`
//!   (its rows are on disk but no ordinary reader opens it; it is never mistaken for a good
//!   file); a file without any complete row group is removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::metadata::{ParquetMetaDataBuilder, ParquetMetaDataWriter, RowGroupMetaData};
use ::parquet::file::properties::WriterProperties;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// A simulated disk for tests: how many more bytes writes may put on it (shared by every
/// file of a recorder); once used up, writes fail as on a full disk.
#[cfg(test)]
pub(crate) type TestDisk = Arc<std::sync::atomic::AtomicI64>;

/// What was left of a file whose writing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Salvaged {
    /// The file got a footer after its complete row groups: readable, with `kept_rows`.
    Kept,
    /// No footer could be written: renamed to this path (rows on disk, not readable).
    Renamed(PathBuf),
    /// It held no complete row group and was removed.
    Removed,
    /// Nothing could be done with it (neither footer, rename nor removal worked).
    LeftAsIs,
}

/// A file whose writing failed: why, and what became of it.
#[derive(Debug)]
pub struct Failure {
    pub path: PathBuf,
    pub error: String,
    /// Rows readable in `path` after the salvage.
    pub kept_rows: u64,
    /// Rows that are not in any readable file because of this failure.
    pub lost_rows: u64,
    pub salvaged: Salvaged,
}

impl Failure {
    /// A file that could not even be created.
    pub fn not_created(path: PathBuf, error: String, lost_rows: u64) -> Self {
        Self {
            path,
            error,
            kept_rows: 0,
            lost_rows,
            salvaged: Salvaged::Removed,
        }
    }

    /// What became of the file, in words (for the log).
    pub fn describe(&self) -> String {
        match &self.salvaged {
            Salvaged::Kept => format!(
                "the {} rows written before stay readable in it",
                self.kept_rows
            ),
            Salvaged::Renamed(to) => format!(
                "no room for its footer: its complete row groups are in {} (not readable by Parquet readers)",
                to.display()
            ),
            Salvaged::Removed => "it held no complete row group and was removed".into(),
            Salvaged::LeftAsIs => "it could not be repaired, renamed or removed".into(),
        }
    }
}

/// Shared between the file handle the arrow writer writes through and its owner.
#[derive(Default)]
struct Guard {
    /// Set after a failure: no byte goes to the file through the writer any more (the
    /// writer's buffer would otherwise be flushed on drop, over the repaired file).
    abandoned: AtomicBool,
    /// Bytes that reached the file through the writer.
    written: AtomicU64,
    #[cfg(test)]
    disk: Option<TestDisk>,
    /// The simulated disk's blocks of this file are allocated up to here.
    #[cfg(test)]
    allocated: AtomicU64,
}

#[cfg(test)]
impl Guard {
    /// Take `bytes` of the simulated disk: how many were free.
    fn take(disk: &TestDisk, bytes: u64) -> u64 {
        let free = disk.load(Ordering::Relaxed).max(0) as u64;
        let taken = bytes.min(free);
        disk.fetch_sub(taken as i64, Ordering::Relaxed);
        taken
    }

    /// Allocate the simulated blocks up to `end`, all or nothing (as tmpfs does).
    fn allocate(&self, disk: &TestDisk, end: u64) -> io::Result<()> {
        let from = self
            .allocated
            .load(Ordering::Relaxed)
            .max(self.written.load(Ordering::Relaxed));
        let needed = end.saturating_sub(from);
        if (disk.load(Ordering::Relaxed).max(0) as u64) < needed {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (simulated)",
            ));
        }
        Self::take(disk, needed);
        self.allocated.fetch_max(end, Ordering::Relaxed);
        Ok(())
    }

    /// Cut the simulated file at `len`: its blocks after it are free again.
    fn cut(&self, disk: &TestDisk, len: u64) {
        let end = self
            .allocated
            .load(Ordering::Relaxed)
            .max(self.written.load(Ordering::Relaxed));
        disk.fetch_add(end.saturating_sub(len) as i64, Ordering::Relaxed);
        self.allocated.store(len, Ordering::Relaxed);
    }
}

/// The file as the arrow writer sees it.
struct Guarded {
    file: File,
    guard: Arc<Guard>,
}

impl Write for Guarded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.guard.abandoned.load(Ordering::Relaxed) {
            return Err(io::Error::other(
                "the file was abandoned after a write error",
            ));
        }
        #[cfg(test)]
        let buf = match &self.guard.disk {
            Some(disk) => {
                // Bytes going to allocated blocks are free; the others take free space.
                let at = self.guard.written.load(Ordering::Relaxed);
                let allocated = self.guard.allocated.load(Ordering::Relaxed);
                let len = buf.len() as u64;
                let prepaid = allocated.saturating_sub(at).min(len);
                let n = prepaid + Guard::take(disk, len - prepaid);
                if n == 0 && !buf.is_empty() {
                    self.guard.abandoned.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "No space left on device (simulated)",
                    ));
                }
                &buf[..n as usize]
            }
            None => buf,
        };
        match self.file.write(buf) {
            Ok(n) => {
                self.guard.written.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
            Err(error) => {
                self.guard.abandoned.store(true, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An open Parquet file (see the module docs).
pub struct ParquetFile {
    path: PathBuf,
    writer: Option<ArrowWriter<Guarded>>,
    guard: Arc<Guard>,
    /// A second handle on the file, for the repair.
    handle: File,
    schema: SchemaRef,
    properties: WriterProperties,
    committed_len: u64,
    committed_groups: usize,
    committed_rows: u64,
    /// The file's blocks are preallocated up to here.
    reserved_to: u64,
}

impl ParquetFile {
    /// Create `path` (never overwriting a file) for rows of `schema`.
    pub fn create(
        path: PathBuf,
        schema: SchemaRef,
        properties: WriterProperties,
        #[cfg(test)] disk: Option<TestDisk>,
    ) -> Result<Self, Failure> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Failure::not_created(path.clone(), format!("cannot create: {e}"), 0))?;
        let opened = file.try_clone().and_then(|handle| {
            let guard = Arc::new(Guard {
                #[cfg(test)]
                disk,
                ..Guard::default()
            });
            let guarded = Guarded {
                file,
                guard: guard.clone(),
            };
            let writer = ArrowWriter::try_new(guarded, schema.clone(), Some(properties.clone()))
                .map_err(io::Error::other)?;
            Ok((handle, guard, writer))
        });
        match opened {
            Ok((handle, guard, writer)) => Ok(Self {
                path,
                writer: Some(writer),
                guard,
                handle,
                schema,
                properties,
                committed_len: 0,
                committed_groups: 0,
                committed_rows: 0,
                reserved_to: 0,
            }),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(Failure::not_created(path, error.to_string(), 0))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the complete row groups so far.
    pub fn committed_bytes(&self) -> u64 {
        self.committed_len
    }

    /// Rows in complete row groups so far.
    pub fn rows(&self) -> u64 {
        self.committed_rows
    }

    /// Write `batch` as (at least) one complete row group and hand it to the file. On an
    /// error the file must be given up with [`Self::salvage`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let Some(writer) = self.writer.as_mut() else {
            return Err("the file is closed".into());
        };
        writer
            .write(batch)
            .and_then(|()| writer.flush())
            .map_err(|e| e.to_string())?;
        writer.sync().map_err(|e| e.to_string())?;
        let before = self.committed_len;
        self.committed_len = self.guard.written.load(Ordering::Relaxed);
        start_writeback(&self.handle, before, self.committed_len - before);
        self.committed_groups = writer.flushed_row_groups().len();
        self.committed_rows += batch.num_rows() as u64;
        self.reserve();
        Ok(())
    }

    /// Keep room after the file's end for the footer of its row groups (and one more).
    fn reserve(&mut self) {
        let columns = self.schema.fields().len() as u64;
        // Measured (57 car_telemetry columns): 5.3 KB plus 3.4 KB a row group, about 60
        // bytes a column chunk. The estimate leaves room for twice that.
        let footer = 8 * 1024 + columns * 128 + (self.committed_groups as u64 + 1) * columns * 96;
        if self.committed_len + footer <= self.reserved_to {
            return;
        }
        let end = self.committed_len + 2 * footer;
        if self.preallocate(end).is_ok() {
            self.reserved_to = end;
        }
    }

    /// Allocate the file's blocks up to `end` without changing its size.
    fn preallocate(&self, end: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(disk) = &self.guard.disk {
            return self.guard.allocate(disk, end);
        }
        preallocate(&self.handle, self.committed_len, end - self.committed_len)
    }

    /// Write the footer, drop the preallocated room, fsync and close: the number of rows in
    /// the file. On an error the file is salvaged instead.
    pub fn close(mut self) -> Result<u64, Failure> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.salvage("the file is closed".into()));
        };
        let closed = writer.finish().map_err(|e| e.to_string()).and_then(|_| {
            let len = self.guard.written.load(Ordering::Relaxed);
            self.handle.set_len(len).map_err(|e| e.to_string())?;
            #[cfg(test)]
            if let Some(disk) = &self.guard.disk {
                self.guard.cut(disk, len);
            }
            self.handle.sync_all().map_err(|e| e.to_string())
        });
        match closed {
            Ok(()) => {
                self.writer = None;
                tracing::debug!(path = %self.path.display(), "parquet: closed");
                Ok(self.committed_rows)
            }
            Err(error) => Err(self.salvage(error)),
        }
    }

    /// Give up writing after `error`: keep the complete row groups readable if possible
    /// (see the module docs). `lost_rows` of the result counts the rows of the file that
    /// are not readable now; rows that never reached it are the caller's to count.
    pub fn salvage(mut self, error: String) -> Failure {
        self.guard.abandoned.store(true, Ordering::Relaxed);
        let groups: Vec<RowGroupMetaData> = self
            .writer
            .as_ref()
            .map(|w| w.flushed_row_groups()[..self.committed_groups].to_vec())
            .unwrap_or_default();
        // Dropping the writer cannot write any more (abandoned).
        self.writer = None;
        let mut failure = Failure {
            path: self.path.clone(),
            error,
            kept_rows: 0,
            lost_rows: 0,
            salvaged: Salvaged::LeftAsIs,
        };
        if groups.is_empty() {
            if std::fs::remove_file(&self.path).is_ok() {
                failure.salvaged = Salvaged::Removed;
            }
            return failure;
        }
        match self.write_footer(groups) {
            Ok(()) => {
                failure.kept_rows = self.committed_rows;
                failure.salvaged = Salvaged::Kept;
            }
            Err(footer_error) => {
                tracing::debug!(path = %self.path.display(), error = %footer_error, "parquet: no footer after a write error");
                failure.lost_rows = self.committed_rows;
                let _ = self.handle.set_len(self.committed_len);
                #[cfg(test)]
                if let Some(disk) = &self.guard.disk {
                    self.guard.cut(disk, self.committed_len);
                }
                let mut name = self.path.as_os_str().to_owned();
                name.push(".failed");
                let renamed = PathBuf::from(name);
                if !renamed.exists() && std::fs::rename(&self.path, &renamed).is_ok() {
                    failure.salvaged = Salvaged::Renamed(renamed);
                }
            }
        }
        failure
    }

    /// Write the footer of `groups` at `committed_len`, cut the file after it and fsync.
    fn write_footer(&mut self, groups: Vec<RowGroupMetaData>) -> Result<(), String> {
        // The file metadata (schema, arrow schema, writer version) as the arrow writer
        // makes them: from an empty file written to memory.
        let mut empty = ArrowWriter::try_new(
            Vec::new(),
            self.schema.clone(),
            Some(self.properties.clone()),
        )
        .map_err(|e| e.to_string())?;
        let template = empty.finish().map_err(|e| e.to_string())?;
        let metadata = ParquetMetaDataBuilder::new_from_metadata(template)
            .set_row_groups(groups)
            .build();
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &metadata)
            .finish()
            .map_err(|e| e.to_string())?;
        #[cfg(test)]
        if let Some(disk) = &self.guard.disk {
            // The simulated disk: the footer goes to blocks the file has after
            // `committed_len` (the failed write's, the preallocated ones) and needs free space
            // for the rest; the cut after it frees the remaining blocks.
            let end = self
                .guard
                .allocated
                .load(Ordering::Relaxed)
                .max(self.guard.written.load(Ordering::Relaxed));
            self.guard.allocated.store(end, Ordering::Relaxed);
            self.guard
                .written
                .store(self.committed_len, Ordering::Relaxed);
            self.guard
                .allocate(disk, self.committed_len + footer.len() as u64)
                .map_err(|e| e.to_string())?;
            self.guard
                .cut(disk, self.committed_len + footer.len() as u64);
        }
        let io = |e: io::Error| e.to_string();
        self.handle
            .seek(SeekFrom::Start(self.committed_len))
            .map_err(io)?;
        self.handle.write_all(&footer).map_err(io)?;
        self.handle
            .set_len(self.committed_len + footer.len() as u64)
            .map_err(io)?;
        self.handle.sync_all().map_err(io)
    }
}

/// Start writing `len` bytes from `offset` to the disk, without waiting. A row group is
/// written once and never changed, so the disk can have it while the next is encoded:
/// the fsync on close then waits for little instead of the whole file (0.4 s for a
/// 300 MB file here), and a crash finds more of it on the disk.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: sync_file_range on a file descriptor this handle owns; no memory is passed.
    // Only a hint: an error changes nothing (the fsync on close still makes it durable).
    unsafe {
        // Wait until what was started before is on the disk, then start this range.
        libc::sync_file_range(
            file.as_raw_fd(),
            0,
            offset,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        );
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Allocate the blocks of `len` bytes from `offset` without changing the file's size.
#[cfg(target_os = "linux")]
fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::other("too large"));
    };
    // SAFETY: fallocate on a file descriptor this handle owns; no memory is passed.
    let result =
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::other("not supported"))
}
