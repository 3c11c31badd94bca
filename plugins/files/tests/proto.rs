//! `.pb.gz` recordings end to end: sink `proto_record` -> file -> source `proto_replay`, cut
//! files, and Python's `gzip` module (the original tools' reader) reading what the sink
//! writes, as an independent check of the format.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pitwall_api::telemetry::{from_frame, proto, FrameStrings};
use pitwall_api::testing::{build_context, drain, parse_config, wire};
use pitwall_api::{CarTelemetry, ComponentConfig, Event, Record, WhenFull};
use pitwall_files::pbgz::FrameWriter;
use pitwall_files::proto_record::{self, ProtoRecordConfig};
use pitwall_files::proto_replay::ProtoReplayConfig;
use prost::Message;

/// A frame with every page filled and values that change from frame to frame.
fn frame(i: u64) -> proto::TelemetryFrame {
    let f = i as f32;
    let wheels = |base: f32| {
        Some(proto::Wheel4f {
            fl: base + f,
            fr: base + 1.0 + f,
            rl: base + 2.0,
            rr: base - f,
        })
    };
    let vec3 = |base: f32| {
        Some(proto::Vec3f {
            x: base * f,
            y: -base,
            z: base + f / 7.0,
        })
    };
    proto::TelemetryFrame {
        monotonic_ns: 5_000_000_000 + i * 3_003_003,
        game: "assetto_corsa".into(),
        session_id: if i < 700 { "rig-1" } else { "rig-2" }.into(),
        physics: Some(proto::Physics {
            speed_kmh: 100.0 + f / 10.0,
            gas: (i % 100) as f32 / 100.0,
            brake: (i % 7) as f32 / 7.0,
            clutch: 0.0,
            gear: (i % 8) as i32,
            steer: ((i % 21) as f32 - 10.0) / 10.0,
            engine_rpm: 4000.0 + (i % 5000) as f32,
            tyre_slip: wheels(0.1),
            tyre_load: wheels(3000.0),
            tyre_temp_c: wheels(80.0),
            suspension_travel: wheels(0.02),
            acc_g: vec3(0.5),
            velocity: vec3(30.0),
            angular_velocity: vec3(0.01),
        }),
        graphics: Some(proto::Graphics {
            status: 2,
            completed_laps: (i / 500) as i32,
            position: 1 + (i % 3) as i32,
            i_current_time_s: (i % 500) as f32 * 0.2,
            i_last_time_s: if i >= 500 { 101.5 } else { 0.0 },
            i_best_time_s: if i >= 500 { 100.25 } else { 0.0 },
            lap_time_s: (i % 500) as f32 * 0.2,
            delta_lap_s: -0.5,
            normalized_car_pos: (i % 500) as f32 / 500.0,
        }),
        stat: (i % 2 == 0).then(|| proto::Static {
            car_model: "ks_porsche_911_gt3_r_2016".into(),
            track: "spa".into(),
            track_configuration: String::new(),
            max_rpm: 9250,
        }),
    }
}

/// The records of `frames`, as a live source would emit them (wall-clock event time).
fn cars(frames: std::ops::Range<u64>) -> Vec<Event> {
    let mut strings = FrameStrings::default();
    frames
        .map(|i| {
            let car = from_frame(&frame(i), &mut strings);
            Event::new(
                1_700_000_000_000_000_000 + i as i64,
                Record::CarTelemetry(Arc::new(car)),
            )
        })
        .collect()
}

fn car_of(event: &Event) -> &CarTelemetry {
    match &event.record {
        Record::CarTelemetry(car) => car,
        other => panic!("not car telemetry: {other:?}"),
    }
}

/// Run the `proto_record` sink over `batches`; returns the files it wrote.
async fn record(dir: &Path, options: &str, batches: Vec<Vec<Event>>) -> Vec<PathBuf> {
    let config: ProtoRecordConfig = parse_config(options);
    assert!(config.check().is_empty());
    let mut sink = config.build(&build_context("rec", dir)).unwrap();
    let mut wiring = wire("rec", true);
    let input = wiring.input.take().unwrap();
    for batch in batches {
        input.push(Arc::new(batch), WhenFull::Block).await;
    }
    input.close();
    sink.run(&mut wiring.io).await.unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Replay `path` as fast as possible: the events and the errors counted.
async fn replay(path: &Path) -> (Vec<Event>, u64) {
    let config: ProtoReplayConfig =
        parse_config(&format!("path = {:?}\nspeed = 0", path.to_string_lossy()));
    let mut source = config.build(&build_context("replay", ".")).unwrap();
    let mut wiring = wire("replay", false);
    source.run(&mut wiring.io).await.unwrap();
    (drain(&wiring.output), wiring.io.metrics.snapshot().errors)
}

/// Python's `gzip` module reading a recording record by record, as the original tools do,
/// with a hand-rolled varint loop: each complete record's `monotonic_ns` (field 1), whether
/// the gzip stream ended properly (a cut stream raises `EOFError` once nothing more can be
/// decompressed), and how many bytes of an incomplete last record a complete stream held.
const PYTHON_READER: &str = r#"
import gzip, json, sys

def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7

times = []
complete = True
trailing = 0
with gzip.open(sys.argv[1], "rb") as f:
    while True:
        try:
            prefix = b""
            while True:
                b = f.read(1)
                if not b:
                    break
                prefix += b
                if not b[0] & 0x80:
                    break
            if not prefix:
                break
            if prefix[-1] & 0x80:
                trailing = len(prefix)
                break
            length, _ = varint(prefix, 0)
            record = f.read(length)
        except EOFError:
            complete = False
            break
        if len(record) < length:
            trailing = len(prefix) + len(record)
            break
        t = 0
        if record[:1] == b"\x08":
            t, _ = varint(record, 1)
        times.append(t)
print(json.dumps({"complete": complete, "times": times, "trailing": trailing}))
"#;

#[derive(Debug)]
struct PythonRead {
    complete: bool,
    times: Vec<u64>,
    trailing: usize,
}

fn python_read(path: &Path) -> PythonRead {
    let output = Command::new("python3")
        .arg("-c")
        .arg(PYTHON_READER)
        .arg(path)
        .output()
        .expect("python3 runs (the original tools' reader is Python's gzip module)");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    PythonRead {
        complete: value["complete"].as_bool().unwrap(),
        times: value["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect(),
        trailing: value["trailing"].as_u64().unwrap() as usize,
    }
}

fn monotonic(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| car_of(e).monotonic_ns).collect()
}

#[tokio::test]
async fn record_then_replay_gives_back_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let events = cars(0..3000);
    let batches: Vec<Vec<Event>> = events.chunks(333).map(<[Event]>::to_vec).collect();
    let files = record(dir.path(), "path = \"rec/\"", batches).await;
    assert_eq!(files.len(), 1);
    let (back, errors) = replay(&files[0]).await;
    assert_eq!(errors, 0);
    assert_eq!(back.len(), events.len());
    for (got, want) in back.iter().zip(&events) {
        assert_eq!(car_of(got), car_of(want));
        // Replays take the recording's clock as event time.
        assert_eq!(got.time_ns, car_of(want).monotonic_ns as i64);
    }
    // Frame by frame what prost writes: the bytes decode to the frames we started from.
    let python = python_read(&files[0]);
    assert!(python.complete);
    assert_eq!(python.trailing, 0);
    assert!(python.times == monotonic(&events));
}

#[tokio::test]
async fn rolled_files_replay_in_order_as_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let events = cars(0..4000);
    let batches: Vec<Vec<Event>> = events.chunks(100).map(<[Event]>::to_vec).collect();
    let files = record(
        dir.path(),
        "path = \"rec/part-{n}.pb.gz\"\nroll_bytes = 20000\ngzip_level = 1",
        batches,
    )
    .await;
    assert!(files.len() >= 3, "{files:?}");
    // part-10 sorts before part-2 by name: list them by number.
    let mut numbered: Vec<(u64, PathBuf)> = files
        .iter()
        .map(|p| {
            let stem = p.file_name().unwrap().to_string_lossy().to_string();
            let n = stem.trim_start_matches("part-").trim_end_matches(".pb.gz");
            (n.parse().unwrap(), p.clone())
        })
        .collect();
    numbered.sort();
    let list: Vec<String> = numbered
        .iter()
        .map(|(_, p)| format!("{:?}", p.to_string_lossy()))
        .collect();
    let config: ProtoReplayConfig =
        parse_config(&format!("path = [{}]\nspeed = 0", list.join(", ")));
    let mut source = config.build(&build_context("replay", ".")).unwrap();
    let mut wiring = wire("replay", false);
    source.run(&mut wiring.io).await.unwrap();
    let back = drain(&wiring.output);
    assert_eq!(back.len(), events.len());
    assert!(monotonic(&back) == monotonic(&events));
}

#[tokio::test]
async fn a_record_cut_in_the_middle_is_dropped_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    // The bytes of 1000 records and most of the next one, as one complete gzip stream: what
    // a recorder that died in the middle of a write and was flushed leaves.
    let mut plain = Vec::new();
    for i in 0..1001 {
        frame(i).encode_length_delimited(&mut plain).unwrap();
    }
    plain.truncate(plain.len() - 9);
    let path = dir.path().join("cut-record.pb.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    encoder.finish().unwrap();

    let (back, errors) = replay(&path).await;
    assert_eq!(back.len(), 1000);
    assert_eq!(errors, 1, "the cut record is reported once");
    let want = cars(0..1000);
    for (got, want) in back.iter().zip(&want) {
        assert_eq!(car_of(got), car_of(want));
    }
    let python = python_read(&path);
    assert_eq!(python.times.len(), 1000);
    assert!(python.trailing > 0);
}

#[tokio::test]
async fn a_record_that_is_not_a_frame_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = Vec::new();
    frame(0).encode_length_delimited(&mut plain).unwrap();
    // A well-framed record whose bytes are not a TelemetryFrame (field 0 is invalid).
    plain.extend_from_slice(&[3, 0x00, 0xff, 0xff]);
    frame(1).encode_length_delimited(&mut plain).unwrap();
    let path = dir.path().join("bad-record.pb.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    encoder.finish().unwrap();
    let (back, errors) = replay(&path).await;
    assert_eq!(errors, 1);
    assert_eq!(monotonic(&back), monotonic(&cars(0..2)));
}

#[tokio::test]
async fn a_gzip_stream_cut_mid_block_replays_every_record_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.pb.gz");
    // 3000 records, a sync flush (what flush_interval_ms does), 2000 more, then the
    // stream ends properly; the file is cut at points after the flush.
    let mut writer = FrameWriter::new(std::fs::File::create(&path).unwrap(), 6);
    let events = cars(0..5000);
    for event in &events[..3000] {
        writer.write_car(car_of(event)).unwrap();
    }
    writer.sync_flush().unwrap();
    let flushed = std::fs::metadata(&path).unwrap().len();
    for event in &events[3000..] {
        writer.write_car(car_of(event)).unwrap();
    }
    writer.finish().unwrap();
    let whole = std::fs::read(&path).unwrap();
    let flushed = flushed as usize;
    for cut in [
        flushed,
        flushed + 1,
        flushed + (whole.len() - flushed) / 3,
        whole.len() - 100,
        whole.len() - 4,
    ] {
        let cut_path = dir.path().join(format!("cut-{cut}.pb.gz"));
        std::fs::write(&cut_path, &whole[..cut]).unwrap();
        let (back, errors) = replay(&cut_path).await;
        // Python's gzip, reading chunk by chunk, is the reference for what a cut stream
        // still holds: the replay emits exactly the complete records in it.
        let python = python_read(&cut_path);
        assert!(!python.complete, "cut at {cut}");
        assert!(back.len() >= 3000, "cut at {cut}: {} records", back.len());
        assert_eq!(
            back.len(),
            python.times.len(),
            "cut at {cut}: records replayed / read by Python"
        );
        assert!(monotonic(&back) == python.times, "cut at {cut}");
        assert!(monotonic(&back) == monotonic(&events[..back.len()]));
        assert_eq!(errors, 1, "cut at {cut}");
    }
}

#[tokio::test]
async fn python_reads_a_recording_while_it_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let config: ProtoRecordConfig =
        parse_config("path = \"rec/live.pb.gz\"\nflush_interval_ms = 50");
    let mut sink = config.build(&build_context("rec", dir.path())).unwrap();
    let mut wiring = wire("rec", true);
    let input = wiring.input.take().unwrap();
    let task = tokio::spawn(async move { sink.run(&mut wiring.io).await.unwrap() });
    let events = cars(0..2000);
    input
        .push(Arc::new(events[..1500].to_vec()), WhenFull::Block)
        .await;
    // No gzip trailer yet (a crash now would leave this file): everything flushed reads,
    // within a flush interval or so (polled: a loaded machine may take longer).
    let path = dir.path().join("rec/live.pb.gz");
    let mut python = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if path.exists() {
            let read = python_read(&path);
            if read.times.len() == 1500 {
                python = Some(read);
                break;
            }
        }
    }
    let python = python.expect("the flushed records are readable while the sink runs");
    assert!(!python.complete);
    assert_eq!(python.times.len(), 1500);
    assert!(python.times == monotonic(&events[..1500]));
    input
        .push(Arc::new(events[1500..].to_vec()), WhenFull::Block)
        .await;
    input.close();
    task.await.unwrap();
    let python = python_read(&path);
    assert!(python.complete);
    assert!(python.times == monotonic(&events));
    assert!(proto_record::DIRECTORY_FILE_NAME.ends_with(".pb.gz"));
}
