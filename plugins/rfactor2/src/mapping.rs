//! Windows only: the plugin's named file mapping itself (`$rFactor2SMMP_Telemetry$`, ...),
//! read through a read-only view.
//!
//! The view is opened on first read and kept; [`SharedBuffer::reopen`] drops it so a game
//! that restarted (a new mapping under the same name) is picked up. Reads copy out of the
//! view between acquire fences; consistency is the version-block protocol's job
//! ([`crate::snapshot`]), exactly as for the bridge's files.

use std::ffi::c_void;
use std::io;
use std::sync::atomic::{fence, Ordering};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Memory::{
    MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
};

use crate::snapshot::SharedBuffer;

/// A named mapping, e.g. `$rFactor2SMMP_Scoring$` or `$rFactor2SMMP_Scoring$4242`.
pub struct MappedBuffer {
    name: String,
    wide: Vec<u16>,
    view: Option<View>,
}

struct View {
    handle: HANDLE,
    base: *const u8,
    len: usize,
}

// The view is only read, through copies, by whoever owns the `MappedBuffer`.
unsafe impl Send for View {}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: `base` and `handle` came from a successful MapViewOfFile and
        // OpenFileMappingW and are released exactly once, here.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.base as *mut c_void,
            });
            CloseHandle(self.handle);
        }
    }
}

impl MappedBuffer {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            wide: name.encode_utf16().chain(std::iter::once(0)).collect(),
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
}

impl SharedBuffer for MappedBuffer {
    fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
        if self.view.is_none() {
            self.view = Some(self.open()?);
        }
        let Some(view) = self.view.as_ref() else {
            return Ok(0);
        };
        let n = view.len.saturating_sub(offset).min(out.len());
        if n == 0 {
            return Ok(0);
        }
        fence(Ordering::Acquire);
        // SAFETY: `offset + n <= len`, the size of the mapped region, which stays mapped
        // while `view` lives. The game may be writing meanwhile: the bytes may be torn,
        // which the version-block protocol detects; they are plain bytes, any value is valid.
        unsafe {
            std::ptr::copy_nonoverlapping(view.base.add(offset), out.as_mut_ptr(), n);
        }
        fence(Ordering::Acquire);
        Ok(n)
    }

    fn reopen(&mut self) {
        self.view = None;
    }

    fn describe(&self) -> String {
        format!("mapping `{}`", self.name)
    }
}
