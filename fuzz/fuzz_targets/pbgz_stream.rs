//! `.pb.gz` recordings: any bytes, compressed or not, end the read with frames or a
//! reported end, never a panic or an unbounded allocation; every frame decodes or errs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_api::telemetry::FrameStrings;
use pitwall_files::pbgz::{self, FrameReader, Next};

fn read_all<R: std::io::Read>(mut reader: FrameReader<R>) {
    let mut strings = FrameStrings::default();
    for _ in 0..100_000 {
        match reader.next_frame() {
            Next::Frame(bytes) => {
                let _ = pbgz::decode_car(bytes, &mut strings);
            }
            Next::End(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // As a gzip file, and as an already decompressed stream of delimited frames.
    read_all(pbgz::open(data));
    read_all(FrameReader::new(data));
});
