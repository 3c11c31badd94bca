//! `.pb.gz` -> Parquet conversion throughput: what `pipelines/ac-convert.toml` does, through
//! the real components (`proto_replay` at speed 0 -> bounded queue of 64 batches, the
//! engine's default -> `parquet`), on a tokio runtime with 2 workers.
//!
//!     cargo bench -p pitwall-files --bench convert
//!     FRAMES=500000 cargo bench -p pitwall-files --bench convert
//!
//! Prints frames/s, the CPU time used (all threads), and the peak resident memory of the
//! conversion (VmHWM, reset before it starts). Wall-clock numbers need an otherwise idle
//! machine; CPU seconds do not. The generated recording (every page filled, values varying
//! smoothly like a car lapping; gzip level 6 like the bridge's zlib default, about 2:1 on
//! such data) is kept in the target directory between runs.
//!
//! - `STAGES=1` also times each step alone: inflating, framing, decoding (on one thread and
//!   with inflating on its own thread), the parquet sink fed decoded records, the replay
//!   source with its output discarded.
//! - `ENCODE_VARIANTS=1` only compares Parquet writer settings on the same row groups.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pitwall_api::channel::{Input, Output, Queue, Target, WhenFull};
use pitwall_api::telemetry::{from_frame, FrameStrings};
use pitwall_api::testing::{build_context, parse_config};
use pitwall_api::{ComponentConfig, ComponentMetrics, Io, Shutdown};
use pitwall_files::parquet::ParquetConfig;
use pitwall_files::proto_replay::ProtoReplayConfig;

#[path = "recording/mod.rs"]
mod recording;
use recording::{frame, recording};

/// The engine's default queue capacity, in batches.
const QUEUE_BATCHES: usize = 64;

/// CPU seconds used so far by this thread or this process: other work on a shared machine
/// slows wall-clock numbers down, not these.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut time) };
    time.tv_sec as f64 + time.tv_nsec as f64 / 1e9
}

fn thread_cpu() -> f64 {
    cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> f64 {
    cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn peak_rss_reset() {
    // "5" resets the peak resident set size (VmHWM) of this process (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn io(id: &str, input: Option<Arc<Queue>>, output: Option<Arc<Queue>>) -> Io {
    let metrics = Arc::new(ComponentMetrics::default());
    let out = Output::new(metrics.clone());
    if let Some(queue) = output {
        out.set_targets(vec![Target {
            consumer: "next".into(),
            queue,
            when_full: WhenFull::Block,
        }]);
    }
    Io {
        id: id.into(),
        input: input.map(Input::new),
        output: out,
        shutdown: Shutdown::new(),
        metrics,
    }
}

fn replay_config(path: &Path) -> ProtoReplayConfig {
    parse_config(&format!("path = {:?}\nspeed = 0", path.to_string_lossy()))
}

/// proto_replay -> queue -> parquet; returns the seconds it took and the output size.
async fn convert(path: &Path, out: &Path) -> (f64, u64) {
    let ctx = build_context("bench", out);
    let mut source = replay_config(path).build(&ctx).expect("source builds");
    let sink_config: ParquetConfig = parse_config("path = \"parquet\"");
    let mut sink = sink_config.build(&ctx).expect("sink builds");
    let queue = Queue::new(QUEUE_BATCHES, Arc::new(ComponentMetrics::default()));
    let mut source_io = io("replay", None, Some(queue.clone()));
    let mut sink_io = io("parquet", Some(queue.clone()), None);
    let started = Instant::now();
    let sink_task = tokio::spawn(async move {
        sink.run(&mut sink_io).await.expect("sink runs");
        sink_io
    });
    source.run(&mut source_io).await.expect("source runs");
    queue.close();
    let sink_io = sink_task.await.expect("sink task");
    let seconds = started.elapsed().as_secs_f64();
    let snapshot = sink_io.metrics.snapshot();
    assert_eq!(snapshot.errors, 0, "no errors");
    let mut bytes = 0;
    for entry in std::fs::read_dir(out.join("parquet")).expect("output dir") {
        bytes += entry.expect("entry").metadata().expect("metadata").len();
    }
    (seconds, bytes)
}

/// proto_replay alone, its batches dropped as they come.
async fn replay_only(path: &Path, frames: u64) -> f64 {
    let ctx = build_context("bench", ".");
    let mut source = replay_config(path).build(&ctx).expect("source builds");
    let queue = Queue::new(QUEUE_BATCHES, Arc::new(ComponentMetrics::default()));
    let mut source_io = io("replay", None, Some(queue.clone()));
    let started = Instant::now();
    let drain = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(batch) = queue.pop().await {
                n += batch.len() as u64;
            }
            n
        })
    };
    source.run(&mut source_io).await.expect("source runs");
    queue.close();
    let n = drain.await.expect("drain task");
    assert_eq!(n, frames);
    started.elapsed().as_secs_f64()
}

/// The reading stages one by one, on this thread: inflate, + framing, + decoding.
fn stages(path: &Path, frames: u64) {
    use std::io::Read;
    let cpu = thread_cpu();
    let started = Instant::now();
    let mut decoder = flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(
        256 * 1024,
        std::fs::File::open(path).expect("open"),
    ));
    let mut buf = vec![0u8; 256 * 1024];
    let mut plain = 0u64;
    loop {
        let n = decoder.read(&mut buf).expect("inflate");
        if n == 0 {
            break;
        }
        plain += n as u64;
    }
    let inflate = started.elapsed().as_secs_f64();
    let inflate_cpu = thread_cpu() - cpu;
    println!(
        "inflate only: {:.1} MB in {inflate:.2} s ({inflate_cpu:.2} s CPU) = {:.0} MB/s of CPU, {:.0} bytes/frame",
        plain as f64 / 1e6,
        plain as f64 / 1e6 / inflate_cpu,
        plain as f64 / frames as f64
    );
    let cpu = thread_cpu();
    let started = Instant::now();
    let mut reader = pitwall_files::pbgz::open_path(path).expect("open");
    let mut n = 0u64;
    while let pitwall_files::pbgz::Next::Frame(_) = reader.next_frame() {
        n += 1;
    }
    let framing = started.elapsed().as_secs_f64();
    let framing_cpu = thread_cpu() - cpu;
    println!("+ framing:    {n} frames in {framing:.2} s ({framing_cpu:.2} s CPU)");
    let cpu = process_cpu();
    let started = Instant::now();
    let mut reader =
        pitwall_files::pbgz::open_threaded(std::fs::File::open(path).expect("open")).expect("open");
    let mut strings = FrameStrings::default();
    let mut n = 0u64;
    while let pitwall_files::pbgz::Next::Frame(bytes) = reader.next_frame() {
        let car = pitwall_files::pbgz::decode_car(bytes, &mut strings).expect("decode");
        n += car.gear as u64 & 1;
    }
    println!(
        "threaded inflate + decoding: {:.2} s ({:.2} s CPU) ({n})",
        started.elapsed().as_secs_f64(),
        process_cpu() - cpu
    );
    let cpu = thread_cpu();
    let started = Instant::now();
    let mut reader = pitwall_files::pbgz::open_path(path).expect("open");
    let mut strings = FrameStrings::default();
    let mut n = 0u64;
    while let pitwall_files::pbgz::Next::Frame(bytes) = reader.next_frame() {
        let car = pitwall_files::pbgz::decode_car(bytes, &mut strings).expect("decode");
        n += car.gear as u64 & 1;
    }
    let decode = started.elapsed().as_secs_f64();
    let decode_cpu = thread_cpu() - cpu;
    println!(
        "+ decoding:   {frames} frames in {decode:.2} s ({decode_cpu:.2} s CPU; decoding alone {:.0} frames per CPU second) ({n})",
        frames as f64 / (decode_cpu - framing_cpu)
    );
}

/// The parquet sink's work alone (typed columns, encoding on its writer thread, snappy,
/// writes), fed with decoded records: process CPU around `Recorder::write`, so decoding
/// (on this thread, between writes) is not counted.
fn parquet_stage(path: &Path, frames: u64, out: &Path) {
    use pitwall_files::parquet::{ParquetCompression, Recorder, Settings};
    let mut recorder = Recorder::new(
        Settings {
            dir: out.join("stage"),
            kinds: None,
            row_group_rows: 65_536,
            row_group_bytes: 64 * 1024 * 1024,
            compression: ParquetCompression::Snappy,
            roll_interval: None,
            component: "bench".into(),
        },
        0,
    );
    let mut reader = pitwall_files::pbgz::open_path(path).expect("open");
    let mut strings = FrameStrings::default();
    let mut batch = Vec::with_capacity(2048);
    let mut cpu = 0.0;
    let mut wall = 0.0;
    let mut write = |batch: &mut Vec<pitwall_api::Event>, recorder: &mut Recorder| {
        let started = Instant::now();
        let before = process_cpu();
        recorder.write(batch).expect("write");
        cpu += process_cpu() - before;
        wall += started.elapsed().as_secs_f64();
        batch.clear();
    };
    while let pitwall_files::pbgz::Next::Frame(bytes) = reader.next_frame() {
        let car = pitwall_files::pbgz::decode_car(bytes, &mut strings).expect("decode");
        batch.push(pitwall_files::proto_replay::event_of(car));
        if batch.len() == 2048 {
            write(&mut batch, &mut recorder);
        }
    }
    write(&mut batch, &mut recorder);
    let started = Instant::now();
    let before = process_cpu();
    let (counts, result) = recorder.finish();
    result.expect("finish");
    assert_eq!(counts, Default::default());
    cpu += process_cpu() - before;
    wall += started.elapsed().as_secs_f64();
    println!(
        "parquet sink alone: {frames} frames in {wall:.2} s ({cpu:.2} s CPU) = {:.0} frames per CPU second",
        frames as f64 / cpu
    );
}

/// Encoding alone (this thread's CPU), 65536-row batches, under writer settings worth
/// comparing: what the sink uses, and variants. `ENCODE_VARIANTS=1`.
fn encode_variants(path: &Path) {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;
    use pitwall_files::car_columns::{self, CarColumns};
    let mut reader = pitwall_files::pbgz::open_path(path).expect("open");
    let mut strings = FrameStrings::default();
    let mut columns = CarColumns::with_capacity(65_536);
    let mut batches = Vec::new();
    while let pitwall_files::pbgz::Next::Frame(bytes) = reader.next_frame() {
        let car = pitwall_files::pbgz::decode_car(bytes, &mut strings).expect("decode");
        columns.push(0, &car);
        if columns.len() == 65_536 {
            batches.push(columns.finish().expect("batch"));
            if batches.len() == 8 {
                break;
            }
        }
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let base = || {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_dictionary_enabled(false);
        for name in car_columns::DICTIONARY_COLUMNS {
            b = b.set_column_dictionary_enabled(ColumnPath::from(name), true);
        }
        b
    };
    let float_columns: Vec<String> = car_columns::schema()
        .fields()
        .iter()
        .filter(|f| f.data_type() == &arrow_schema::DataType::Float32)
        .map(|f| f.name().clone())
        .collect();
    let sink = || {
        let mut b = base()
            .set_statistics_enabled(EnabledStatistics::None)
            .set_write_batch_size(8192);
        for name in car_columns::STATISTICS_COLUMNS {
            b = b.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::Chunk);
        }
        b
    };
    let variants: Vec<(&str, WriterProperties)> = vec![
        ("sink settings", sink().build()),
        (
            "sink, no compression",
            sink().set_compression(Compression::UNCOMPRESSED).build(),
        ),
        ("statistics everywhere", base().build()),
        (
            "no compression",
            base().set_compression(Compression::UNCOMPRESSED).build(),
        ),
        (
            "no statistics",
            base()
                .set_statistics_enabled(EnabledStatistics::None)
                .build(),
        ),
        ("no float statistics", {
            let mut b = base();
            for name in &float_columns {
                b = b.set_column_statistics_enabled(
                    ColumnPath::from(name.as_str()),
                    EnabledStatistics::None,
                );
            }
            b.build()
        }),
        (
            "write_batch_size 8192",
            base().set_write_batch_size(8192).build(),
        ),
        (
            "no dictionaries",
            base()
                .set_column_dictionary_enabled(ColumnPath::from("game"), false)
                .set_column_dictionary_enabled(ColumnPath::from("session"), false)
                .set_column_dictionary_enabled(ColumnPath::from("car_model"), false)
                .set_column_dictionary_enabled(ColumnPath::from("track"), false)
                .set_column_dictionary_enabled(ColumnPath::from("track_configuration"), false)
                .set_column_dictionary_enabled(ColumnPath::from("driver"), false)
                .build(),
        ),
    ];
    for (name, properties) in variants {
        let mut bytes = 0;
        let cpu = thread_cpu();
        for _ in 0..3 {
            let mut writer =
                ArrowWriter::try_new(Vec::new(), car_columns::schema(), Some(properties.clone()))
                    .expect("writer");
            for batch in &batches {
                writer.write(batch).expect("write");
                writer.flush().expect("flush");
            }
            bytes = writer.into_inner().expect("close").len();
        }
        let cpu = (thread_cpu() - cpu) / 3.0;
        println!(
            "encode {name:24} {rows} rows: {cpu:.3} s CPU = {:.0} rows per CPU second, {:.1} MB",
            rows as f64 / cpu,
            bytes as f64 / 1e6
        );
    }
}

fn main() {
    let frames: u64 = std::env::var("FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let path = recording(frames);
    let compressed = std::fs::metadata(&path).expect("recording").len();
    // Sanity: the generator's frames decode to what a live source would emit.
    let _ = from_frame(&frame(1), &mut FrameStrings::default());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var("ENCODE_VARIANTS").is_ok() {
        encode_variants(&path);
        return;
    }
    if std::env::var("STAGES").is_ok() {
        stages(&path, frames);
        let stage_dir = tempfile::tempdir().expect("temp dir");
        parquet_stage(&path, frames, stage_dir.path());
        let cpu = process_cpu();
        let seconds = runtime.block_on(replay_only(&path, frames));
        let cpu = process_cpu() - cpu;
        println!(
            "replay only:  {frames} frames in {seconds:.2} s = {:.0} frames/s ({cpu:.2} s CPU)",
            frames as f64 / seconds
        );
    }
    let out = tempfile::tempdir().expect("temp dir");
    peak_rss_reset();
    let cpu = process_cpu();
    let (seconds, parquet_bytes) = runtime.block_on(convert(&path, out.path()));
    let cpu = process_cpu() - cpu;
    let rss = peak_rss_mib();
    println!(
        "convert: {frames} frames, {:.1} MB .pb.gz -> {:.1} MB Parquet in {seconds:.2} s = {:.0} frames/s ({cpu:.2} s CPU), peak RSS {rss:.0} MiB",
        compressed as f64 / 1e6,
        parquet_bytes as f64 / 1e6,
        frames as f64 / seconds
    );
}
