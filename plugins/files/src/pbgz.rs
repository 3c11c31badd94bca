//! The `.pb.gz` recording format of the Assetto Corsa bridge (FORMATS.md 5b), without async:
//! the codec shared by sink `proto_record`, source `proto_replay` and the conversion benchmark.
//!
//! A recording is one gzip stream of repeated `[varint length][TelemetryFrame bytes]` records
//! (protobuf "delimited" framing, as `prost::Message::encode_length_delimited` writes it), no
//! header and no trailer beyond gzip's own.
//!
//! - [`FrameWriter`] writes that stream. [`FrameWriter::sync_flush`] ends the deflate block
//!   in progress and aligns the stream on a byte boundary (zlib's `Z_SYNC_FLUSH`), so a file
//!   cut anywhere after it still decompresses, with any gzip reader, up to that point: that
//!   is what keeps a crashed recording readable.
//! - [`FrameReader`] reads it back one frame at a time without trusting it: a stream cut in
//!   the middle (of a record, or of a deflate block), a length beyond [`MAX_FRAME_BYTES`] or
//!   garbage where gzip data should be all end the read with an [`End`] that says why, after
//!   every complete record before it was returned.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc;

use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use pitwall_api::telemetry::{proto, to_frame, FrameStrings};
use pitwall_api::CarTelemetry;
use prost::Message;

/// Longest frame accepted (the bridge's gRPC limit): a longer length means a corrupt stream.
pub const MAX_FRAME_BYTES: u64 = 16 * 1024 * 1024;

/// Decompressed bytes read at a time.
const READ_CHUNK: usize = 256 * 1024;

/// Writes frames as one gzip stream of length-delimited records.
pub struct FrameWriter<W: Write> {
    encoder: GzEncoder<W>,
    scratch: Vec<u8>,
    frames: u64,
}

impl<W: Write> FrameWriter<W> {
    /// `level`: gzip level 0 (store) ..= 9 (smallest); 6 is zlib's default.
    pub fn new(inner: W, level: u32) -> Self {
        Self {
            encoder: GzEncoder::new(inner, Compression::new(level.min(9))),
            scratch: Vec::with_capacity(512),
            frames: 0,
        }
    }

    /// Append one frame. The record is encoded whole before any of it is written.
    pub fn write_frame(&mut self, frame: &proto::TelemetryFrame) -> io::Result<()> {
        self.scratch.clear();
        frame
            .encode_length_delimited(&mut self.scratch)
            .map_err(io::Error::other)?;
        self.encoder.write_all(&self.scratch)?;
        self.frames += 1;
        Ok(())
    }

    /// Append one car-telemetry record as a bridge frame ([`to_frame`]).
    pub fn write_car(&mut self, car: &CarTelemetry) -> io::Result<()> {
        self.write_frame(&to_frame(car))
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Sync flush: everything written so far reaches `inner` as complete deflate blocks,
    /// readable by any gzip reader even if nothing more is ever written.
    pub fn sync_flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }

    pub fn get_ref(&self) -> &W {
        self.encoder.get_ref()
    }

    pub fn get_mut(&mut self) -> &mut W {
        self.encoder.get_mut()
    }

    /// Write the end of the gzip stream (final block, CRC and length) and return `inner`.
    pub fn finish(self) -> io::Result<W> {
        self.encoder.finish()
    }
}

/// How a read ended.
#[derive(Debug)]
pub enum End {
    /// At the end of the stream, on a record boundary.
    Clean,
    /// The stream ended inside a record: `bytes` of it were there (a recording cut off).
    Truncated { bytes: usize },
    /// The compressed stream ended early or is damaged: decompression stopped here.
    Cut(io::Error),
    /// A record claimed more than [`MAX_FRAME_BYTES`]: the stream is corrupt from here on.
    TooLarge(u64),
}

impl End {
    pub fn is_clean(&self) -> bool {
        matches!(self, End::Clean)
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Clean => f.write_str("end of recording"),
            End::Truncated { bytes } => write!(
                f,
                "the recording ends inside a record ({bytes} bytes of it); it was probably cut off"
            ),
            End::Cut(error) => write!(
                f,
                "the compressed stream ends early or is damaged ({error}); it was probably cut off"
            ),
            End::TooLarge(length) => write!(
                f,
                "a record claims {length} bytes (more than {MAX_FRAME_BYTES}): the rest of the stream is corrupt"
            ),
        }
    }
}

/// What [`FrameReader::next_frame`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// The bytes of one `TelemetryFrame` (without its length prefix).
    Frame(&'a [u8]),
    End(End),
}

/// Reads length-delimited records from a decompressed byte stream, never holding more than
/// one chunk plus one record.
pub struct FrameReader<R: Read> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    error: Option<io::Error>,
    finished: bool,
}

/// A recording file opened for reading: gzip decompression over a buffered file.
pub type FileFrames<R> = FrameReader<MultiGzDecoder<BufReader<R>>>;

/// Read a `.pb.gz` recording from `file` (any reader: wrap a file to count the compressed
/// bytes read).
pub fn open<R: Read>(file: R) -> FileFrames<R> {
    FrameReader::new(MultiGzDecoder::new(BufReader::with_capacity(
        READ_CHUNK, file,
    )))
}

/// The first bytes of every gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Checks that `file` starts as a gzip stream does, and leaves it at its start: a file that
/// is not a recording at all (a `.parquet`, a text file) is an error, not "a recording cut
/// off before its first record". An empty file passes (a recording with nothing in it).
pub fn check_gzip(file: &mut File) -> io::Result<()> {
    use std::io::Seek;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.rewind()?;
    if got == 0 || magic[..got] == GZIP_MAGIC[..got] && got == GZIP_MAGIC.len() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "not a .pb.gz recording: it does not start as a gzip stream does",
    ))
}

/// Open a `.pb.gz` recording by path.
pub fn open_path(path: &Path) -> io::Result<FileFrames<File>> {
    Ok(open(File::open(path)?))
}

/// Decompressed bytes of 1 MiB chunks at a time, inflated ahead by a thread of its own.
const INFLATE_CHUNK: usize = 1024 * 1024;
/// Chunks inflated ahead of the reader.
const INFLATE_AHEAD: usize = 4;

/// Decompressed bytes inflated by a thread of their own (see [`open_threaded`]).
pub struct Inflated {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Chunks handed back for reuse.
    recycle: mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Inflated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    let _ = self.recycle.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(error)) => {
                    self.done = true;
                    return Err(error);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Like [`open`], with decompression on a thread of its own a few chunks ahead, so that
/// inflating and decoding use two cores. The thread ends at the end of the stream, at an
/// error (passed on to the reader), or once the reader is dropped.
pub fn open_threaded<R: Read + Send + 'static>(file: R) -> io::Result<FrameReader<Inflated>> {
    let (sender, chunks) = mpsc::sync_channel::<io::Result<Vec<u8>>>(INFLATE_AHEAD);
    let (recycle, reusable) = mpsc::sync_channel::<Vec<u8>>(INFLATE_AHEAD + 2);
    std::thread::Builder::new()
        .name("pbgz-inflate".into())
        .spawn(move || {
            let mut decoder = MultiGzDecoder::new(BufReader::with_capacity(READ_CHUNK, file));
            loop {
                let mut chunk = reusable.try_recv().unwrap_or_default();
                chunk.resize(INFLATE_CHUNK, 0);
                let mut filled = 0;
                let mut failure = None;
                while filled < INFLATE_CHUNK {
                    match decoder.read(&mut chunk[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                chunk.truncate(filled);
                if filled > 0 && sender.send(Ok(chunk)).is_err() {
                    return;
                }
                if let Some(error) = failure {
                    let _ = sender.send(Err(error));
                    return;
                }
                if filled < INFLATE_CHUNK {
                    return;
                }
            }
        })?;
    Ok(FrameReader::new(Inflated {
        chunks,
        recycle,
        chunk: Vec::new(),
        pos: 0,
        done: false,
    }))
}

impl<R: Read> FrameReader<R> {
    /// Read records from an already decompressed stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            eof: false,
            error: None,
            finished: false,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Read more bytes after `end`, making room first. Returns false at the end of input
    /// (or after an error, kept in `self.error`).
    fn fill(&mut self, need: usize) -> bool {
        if self.eof {
            return false;
        }
        if self.start > 0
            && (self.buf.len() - self.end < READ_CHUNK / 4 || self.start + need > self.buf.len())
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.start + need > self.buf.len() {
            self.buf.resize(self.start + need, 0);
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.end + READ_CHUNK / 4, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.end += n;
                    return true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.eof = true;
                    self.error = Some(error);
                    return false;
                }
            }
        }
    }

    /// How the read ended, once no more bytes can come.
    fn end_of_input(&mut self) -> End {
        self.finished = true;
        let pending = self.end - self.start;
        match self.error.take() {
            Some(error) => End::Cut(error),
            None if pending == 0 => End::Clean,
            None => End::Truncated { bytes: pending },
        }
    }

    /// The next record, or how the stream ended (reported once; later calls return
    /// `End::Clean`).
    pub fn next_frame(&mut self) -> Next<'_> {
        if self.finished {
            return Next::End(End::Clean);
        }
        // The varint length: at most 10 bytes.
        let (length, prefix) = loop {
            match parse_varint(&self.buf[self.start..self.end]) {
                Varint::Value(value, used) => break (value, used),
                Varint::Invalid => {
                    self.finished = true;
                    return Next::End(End::TooLarge(u64::MAX));
                }
                Varint::Incomplete => {
                    if !self.fill(10) {
                        return Next::End(self.end_of_input());
                    }
                }
            }
        };
        if length > MAX_FRAME_BYTES {
            self.finished = true;
            return Next::End(End::TooLarge(length));
        }
        let total = prefix + length as usize;
        while self.end - self.start < total {
            if !self.fill(total) {
                return Next::End(self.end_of_input());
            }
        }
        let frame = self.start + prefix..self.start + total;
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Next::Frame(&self.buf[frame])
    }
}

enum Varint {
    Value(u64, usize),
    Incomplete,
    Invalid,
}

fn parse_varint(bytes: &[u8]) -> Varint {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Value(value, i + 1);
        }
    }
    if bytes.len() >= 10 {
        Varint::Invalid
    } else {
        Varint::Incomplete
    }
}

/// Decode one frame's bytes into the common record: the same as `TelemetryFrame::decode`
/// then [`from_frame`](pitwall_api::telemetry::from_frame), without the intermediate message
/// ([`crate::frame_decoder`]).
pub fn decode_car(
    bytes: &[u8],
    strings: &mut FrameStrings,
) -> Result<CarTelemetry, crate::frame_decoder::DecodeError> {
    crate::frame_decoder::decode_car(bytes, strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u64) -> proto::TelemetryFrame {
        proto::TelemetryFrame {
            monotonic_ns: 1_000_000 + i * 3_000_000,
            game: "assetto_corsa".into(),
            session_id: "rig-1".into(),
            physics: Some(proto::Physics {
                speed_kmh: i as f32 * 0.5,
                gear: 3,
                engine_rpm: 5000.0 + i as f32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn recording(frames: u64) -> Vec<u8> {
        let mut writer = FrameWriter::new(Vec::new(), 6);
        for i in 0..frames {
            writer.write_frame(&frame(i)).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> (Vec<proto::TelemetryFrame>, End) {
        let mut reader = open(bytes);
        let mut frames = Vec::new();
        loop {
            match reader.next_frame() {
                Next::Frame(b) => frames.push(proto::TelemetryFrame::decode(b).unwrap()),
                Next::End(end) => return (frames, end),
            }
        }
    }

    #[test]
    fn a_file_that_is_not_gzip_is_refused_and_a_recording_rewound() {
        let dir = std::env::temp_dir().join(format!("pbgz-magic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.txt");
        std::fs::write(&text, "lap 1: 1:23.4\n").unwrap();
        let error = check_gzip(&mut File::open(&text).unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("not a .pb.gz recording"),
            "{error}"
        );
        let gz = dir.join("r.pb.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        let mut file = File::open(&gz).unwrap();
        check_gzip(&mut file).unwrap();
        let mut first = [0u8; 1];
        file.read_exact(&mut first).unwrap();
        assert_eq!(first[0], 0x1f, "left at the start");
        let empty = dir.join("empty.pb.gz");
        std::fs::write(&empty, []).unwrap();
        assert!(check_gzip(&mut File::open(&empty).unwrap()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_round_trip_and_match_prost_framing() {
        let bytes = recording(5000);
        let (frames, end) = read_all(&bytes);
        assert!(end.is_clean(), "{end}");
        assert_eq!(frames.len(), 5000);
        assert_eq!(frames[4321], frame(4321));
        // The decompressed stream is exactly prost's delimited encoding, back to back.
        let mut plain = Vec::new();
        MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..5000 {
            frame(i).encode_length_delimited(&mut expected).unwrap();
        }
        assert_eq!(plain, expected);
    }

    #[test]
    fn a_record_cut_in_the_middle_ends_cleanly_after_the_complete_ones() {
        let mut plain = Vec::new();
        let mut ends = Vec::new();
        for i in 0..3 {
            frame(i).encode_length_delimited(&mut plain).unwrap();
            ends.push(plain.len());
        }
        let two = ends[1];
        for cut in [plain.len() - 1, plain.len() - 5, two + 1, two] {
            let mut reader = FrameReader::new(&plain[..cut]);
            let mut n = 0;
            let end = loop {
                match reader.next_frame() {
                    Next::Frame(_) => n += 1,
                    Next::End(end) => break end,
                }
            };
            assert_eq!(n, 2, "cut at {cut}");
            match end {
                End::Truncated { bytes } => assert_eq!(bytes, cut - two),
                End::Clean => assert_eq!(cut, two),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn a_cut_gzip_stream_keeps_what_was_flushed() {
        let mut writer = FrameWriter::new(Vec::new(), 6);
        for i in 0..1000 {
            writer.write_frame(&frame(i)).unwrap();
        }
        writer.sync_flush().unwrap();
        let flushed = writer.get_ref().len();
        for i in 1000..2000 {
            writer.write_frame(&frame(i)).unwrap();
        }
        let bytes = writer.finish().unwrap();
        // Cut anywhere after the flush point (in the middle of a later deflate block, or
        // inside the trailer): at least the flushed frames come back, then a non-clean end.
        for cut in [
            flushed,
            flushed + 7,
            (flushed + bytes.len()) / 2,
            bytes.len() - 3,
        ] {
            let (frames, end) = read_all(&bytes[..cut]);
            assert!(frames.len() >= 1000, "cut at {cut}: {}", frames.len());
            assert_eq!(
                frames[..],
                (0..frames.len() as u64).map(frame).collect::<Vec<_>>()[..]
            );
            assert!(!end.is_clean(), "cut at {cut}");
        }
        // Garbage instead of gzip: nothing, and an error end.
        let (frames, end) = read_all(b"definitely not gzip data");
        assert!(frames.is_empty());
        assert!(matches!(end, End::Cut(_)), "{end}");
    }

    #[test]
    fn the_threaded_reader_reads_the_same_and_ends_the_same() {
        let bytes = recording(20_000);
        let count = |mut reader: FrameReader<Inflated>| {
            let mut frames = Vec::new();
            loop {
                match reader.next_frame() {
                    Next::Frame(b) => frames.push(proto::TelemetryFrame::decode(b).unwrap()),
                    Next::End(end) => return (frames, end),
                }
            }
        };
        let (frames, end) = count(open_threaded(std::io::Cursor::new(bytes.clone())).unwrap());
        assert!(end.is_clean(), "{end}");
        assert_eq!(frames, read_all(&bytes).0);
        let cut = bytes[..bytes.len() * 2 / 3].to_vec();
        let (frames, end) = count(open_threaded(std::io::Cursor::new(cut.clone())).unwrap());
        let (want, _) = read_all(&cut);
        assert!(matches!(end, End::Cut(_)), "{end}");
        assert_eq!(frames.len(), want.len());
        assert!(frames.len() > 10_000);
        // Dropping the reader early stops the thread (it would otherwise block on a full
        // channel forever; the test would then leak it, not hang).
        let mut reader = open_threaded(std::io::Cursor::new(bytes)).unwrap();
        assert!(matches!(reader.next_frame(), Next::Frame(_)));
        drop(reader);
    }

    #[test]
    fn absurd_lengths_stop_the_read() {
        let mut plain = Vec::new();
        frame(0).encode_length_delimited(&mut plain).unwrap();
        plain.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        plain.extend_from_slice(&[0u8; 100]);
        let mut reader = FrameReader::new(&plain[..]);
        assert!(matches!(reader.next_frame(), Next::Frame(_)));
        assert!(matches!(reader.next_frame(), Next::End(End::TooLarge(_))));
        assert!(matches!(reader.next_frame(), Next::End(End::Clean)));
        let mut reader = FrameReader::new(&[0xffu8; 12][..]);
        assert!(matches!(reader.next_frame(), Next::End(End::TooLarge(_))));
    }

    #[test]
    fn decodes_into_the_common_record() {
        let mut plain = Vec::new();
        frame(2).encode_length_delimited(&mut plain).unwrap();
        let mut reader = FrameReader::new(&plain[..]);
        let Next::Frame(bytes) = reader.next_frame() else {
            panic!("a frame")
        };
        let car = decode_car(bytes, &mut FrameStrings::default()).unwrap();
        assert_eq!(car.monotonic_ns, 7_000_000);
        assert_eq!(car.gear, 2);
        assert!(decode_car(&[0x0a, 0xff], &mut FrameStrings::default()).is_err());
    }
}
