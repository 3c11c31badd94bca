//! Windows only: the plugin's named file mappings (`$rFactor2SMMP_Telemetry$`, ...) as a
//! [`SharedBuffer`]. Consistency is the version-block protocol's job ([`crate::snapshot`]),
//! exactly as for the bridge's files.

use std::io;

use pitwall_api::shared_memory::NamedMapping;

use crate::snapshot::SharedBuffer;

impl SharedBuffer for NamedMapping {
    fn read_at(&mut self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
        NamedMapping::read_at(self, offset, out)
    }

    fn reopen(&mut self) {
        self.close();
    }

    fn describe(&self) -> String {
        format!("mapping `{}`", self.name())
    }
}
