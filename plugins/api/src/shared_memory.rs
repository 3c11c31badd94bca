//! Windows only: another process's named file mapping (a game's shared memory), read
//! through a read-only view. Used by the Assetto Corsa and rFactor 2 sources.
//!
//! The view is opened on first read and kept; [`NamedMapping::close`] drops it so a game
//! that restarted (a new mapping under the same name) is picked up. Reads copy out of the
//! view between acquire fences; whether the copy is consistent is for the caller's format
//! to tell (rF2's version block; AC has no guard).

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{fence, Ordering};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    PAGE_READWRITE,
};

/// A named mapping another process created, e.g. `Local\acpmf_physics` or
/// `$rFactor2SMMP_Scoring$`.
pub struct NamedMapping {
    name: String,
    wide: Vec<u16>,
    view: Option<View>,
}

struct View {
    handle: HANDLE,
    base: *const u8,
    len: usize,
}

// The view is only touched, through copies, by whoever owns the mapping holding it.
unsafe impl Send for View {}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: `base` and `handle` came from a successful MapViewOfFile and
        // Open/CreateFileMappingW and are released exactly once, here.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.base as *mut c_void,
            });
            CloseHandle(self.handle);
        }
    }
}

impl NamedMapping {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            wide: wide(name),
            view: None,
        }
    }

    fn open(&self) -> io::Result<View> {
        // SAFETY: `wide` is NUL-terminated; every handle and view is checked before use and
        // owned by the returned `View`, which releases it.
        unsafe {
            let handle = OpenFileMappingW(FILE_MAP_READ, 0, self.wide.as_ptr());
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            let view = MapViewOfFile(handle, FILE_MAP_READ, 0, 0, 0);
            if view.Value.is_null() {
                let error = io::Error::last_os_error();
                CloseHandle(handle);
                return Err(error);
            }
            let mut info: MEMORY_BASIC_INFORMATION = std::mem::zeroed();
            let got = VirtualQuery(
                view.Value,
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            );
            let len = if got == 0 { 0 } else { info.RegionSize };
            Ok(View {
                handle,
                base: view.Value as *const u8,
                len,
            })
        }
    }

    /// The open view, opening the mapping on first use.
    fn view(&mut self) -> io::Result<&View> {
        let view = match self.view.take() {
            Some(view) => view,
            None => self.open()?,
        };
        Ok(self.view.insert(view))
    }

    /// The mapping's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Copy up to `out.len()` bytes at `offset`; fewer at the end of the mapping, none
    /// (`Ok(0)`) past it. Opens the mapping on first use; an error means nobody has created
    /// it (the game is not running) or it cannot be read.
    pub fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
        let view = self.view()?;
        let n = view.len.saturating_sub(offset).min(out.len());
        if n == 0 {
            return Ok(0);
        }
        fence(Ordering::Acquire);
        // SAFETY: `offset + n <= len`, the size of the mapped region, which stays mapped
        // while `view` lives. The game may be writing meanwhile: the bytes may be torn,
        // which the caller's own protocol must detect; they are plain bytes, any value is
        // valid.
        unsafe {
            std::ptr::copy_nonoverlapping(view.base.add(offset), out.as_mut_ptr(), n);
        }
        fence(Ordering::Acquire);
        Ok(n)
    }

    /// Copy the whole mapping (a few pages at most) into `out`.
    pub fn read_all(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let len = self.view()?.len;
        out.resize(len, 0);
        let n = self.read_at(0, out)?;
        out.truncate(n);
        Ok(())
    }

    /// Drop the view: the next read opens the mapping again (the game restarted and made a
    /// new one under the same name).
    pub fn close(&mut self) {
        self.view = None;
    }
}

/// A named mapping created here, as a game creates its own: backed by the paging file and
/// writable. For tests of the readers (and any tool that plays the game's part).
pub struct OwnedMapping {
    view: View,
}

impl OwnedMapping {
    /// Create (or open, if it exists) the mapping `name` of `len` bytes.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        let wide = wide(name);
        let size = u32::try_from(len).map_err(|_| io::Error::other("mapping too large"))?;
        // SAFETY: `wide` is NUL-terminated; the handle and view are checked before use and
        // owned by the returned `View`, which releases them.
        unsafe {
            let handle = CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                size,
                wide.as_ptr(),
            );
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            let view = MapViewOfFile(handle, FILE_MAP_WRITE, 0, 0, len);
            if view.Value.is_null() {
                let error = io::Error::last_os_error();
                CloseHandle(handle);
                return Err(error);
            }
            Ok(Self {
                view: View {
                    handle,
                    base: view.Value as *const u8,
                    len,
                },
            })
        }
    }

    /// Copy `bytes` into the mapping at `offset`, as far as it reaches.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let n = self.view.len.saturating_sub(offset).min(bytes.len());
        fence(Ordering::Release);
        // SAFETY: `offset + n <= len`, the size of the view, mapped while `self` lives.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.view.base.add(offset) as *mut u8, n);
        }
        fence(Ordering::Release);
    }
}

/// `name` as the NUL-terminated UTF-16 string the Windows calls take.
fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(std::iter::once(0)).collect()
}
