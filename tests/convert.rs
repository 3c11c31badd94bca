//! `pitwall-flow convert`: `.pb.gz` recordings to Parquet through the real binary, read back
//! with the parquet crate; bad inputs and an existing output are refused with the path named.

#[path = "support/cli.rs"]
mod cli;

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::process::Output;

use cli::text;

use arrow_array::{Array, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_api::telemetry::proto;
use pitwall_files::pbgz::FrameWriter;

fn frame(i: u64) -> proto::TelemetryFrame {
    proto::TelemetryFrame {
        monotonic_ns: 5_000_000_000 + i * 3_003_003,
        game: "assetto_corsa".into(),
        session_id: "rig-2".into(),
        physics: Some(proto::Physics {
            speed_kmh: i as f32 * 0.5,
            engine_rpm: 4000.0 + i as f32,
            // AC's gears: 0 reverse, 1 neutral, 2 first.
            gear: (i % 4) as i32,
            ..Default::default()
        }),
        graphics: Some(proto::Graphics {
            completed_laps: (i / 1000) as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A recording of `frames` frames (`first..first + frames`), gzip level 6 like the bridge.
fn write_recording(path: &Path, first: u64, frames: u64) {
    let mut writer = FrameWriter::new(File::create(path).unwrap(), 6);
    for i in first..first + frames {
        writer.write_frame(&frame(i)).unwrap();
    }
    writer.finish().unwrap();
}

fn convert(args: &[&Path]) -> Output {
    let mut all = vec![OsStr::new("convert")];
    all.extend(args.iter().map(|path| path.as_os_str()));
    cli::run(&all)
}

/// Every row's (t_ns, speed_kmh, gear, rpm, lap, game, session).
type Row = (i64, f32, i32, f32, i32, String, String);

/// The column `name` of `batch`, as the array type it must have.
fn column<'b, T: Array + 'static>(batch: &'b RecordBatch, name: &str) -> &'b T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has the wrong type"))
}

fn read_rows(path: &Path) -> Vec<Row> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let t: &Int64Array = column(&batch, "t_ns");
        let speed: &Float32Array = column(&batch, "speed_kmh");
        let gear: &Int32Array = column(&batch, "gear");
        let rpm: &Float32Array = column(&batch, "rpm");
        let lap: &Int32Array = column(&batch, "lap");
        let game: &StringArray = column(&batch, "game");
        let session: &StringArray = column(&batch, "session");
        for i in 0..batch.num_rows() {
            rows.push((
                t.value(i),
                speed.value(i),
                gear.value(i),
                rpm.value(i),
                lap.value(i),
                game.value(i).to_string(),
                session.value(i).to_string(),
            ));
        }
    }
    rows
}

#[test]
fn recordings_become_one_parquet_file_with_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.pb.gz"), dir.path().join("b.pb.gz"));
    write_recording(&first, 0, 150_000);
    write_recording(&second, 150_000, 20_000);
    let output = dir.path().join("out").join("session.parquet");
    std::fs::create_dir(output.parent().unwrap()).unwrap();

    let run = convert(&[&first, &second, Path::new("-o"), &output]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stdout).contains("170000 frames"),
        "{}",
        text(&run.stdout)
    );

    let rows = read_rows(&output);
    assert_eq!(rows.len(), 170_000, "every frame of both recordings");
    for (i, row) in rows.iter().enumerate() {
        let want = frame(i as u64);
        let physics = want.physics.unwrap();
        assert_eq!(row.0, want.monotonic_ns as i64, "t_ns of row {i}");
        assert_eq!(row.1, physics.speed_kmh);
        assert_eq!(
            row.2,
            physics.gear - 1,
            "gear in the one convention: -1 R, 0 N"
        );
        assert_eq!(row.3, physics.engine_rpm);
        assert_eq!(row.4, want.graphics.unwrap().completed_laps);
        assert_eq!((row.5.as_str(), row.6.as_str()), ("assetto_corsa", "rig-2"));
    }
    // Nothing left behind but the output.
    let left: Vec<_> = std::fs::read_dir(output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("session.parquet")]);
}

#[test]
fn a_cut_recording_converts_up_to_its_last_whole_frame_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.pb.gz");
    write_recording(&whole, 0, 50_000);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.pb.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let output = dir.path().join("cut.parquet");

    let run = convert(&[&cut, Path::new("-o"), &output]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("warning"),
        "{}",
        text(&run.stderr)
    );
    let rows = read_rows(&output);
    assert!(
        rows.len() > 10_000 && rows.len() < 50_000,
        "{} rows",
        rows.len()
    );
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.0,
            frame(i as u64).monotonic_ns as i64,
            "a prefix, in order"
        );
    }
}

#[test]
fn an_existing_output_and_a_file_that_is_no_recording_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("r.pb.gz");
    write_recording(&recording, 0, 100);
    let output = dir.path().join("taken.parquet");
    std::fs::write(&output, b"precious").unwrap();

    let run = convert(&[&recording, Path::new("-o"), &output]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("taken.parquet already exists"), "{stderr}");
    assert_eq!(
        std::fs::read(&output).unwrap(),
        b"precious",
        "never overwritten"
    );

    let not_gzip = dir.path().join("notes.txt");
    std::fs::write(&not_gzip, "these are not telemetry frames\n".repeat(100)).unwrap();
    let fresh = dir.path().join("fresh.parquet");
    let run = convert(&[&not_gzip, Path::new("-o"), &fresh]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("notes.txt"), "the input is named: {stderr}");
    assert!(!fresh.exists(), "no output from a failed conversion");

    let missing = dir.path().join("missing.pb.gz");
    let run = convert(&[&missing, Path::new("-o"), &fresh]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("missing.pb.gz"),
        "{}",
        text(&run.stderr)
    );
    assert!(!fresh.exists());
}
