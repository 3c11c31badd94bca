//! `pitwall-flow inspect` and `pitwall-flow plot`, run as the built binary on a Parquet file
//! shaped like the original converter's car telemetry (plus a lap, a spline, car and track).

#[path = "support/cli.rs"]
mod cli;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cli::{run, text};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use pitwall_flow::tools::format_float;

const LAPS: usize = 3;
const ROWS_PER_LAP: usize = 6000;
const ROWS: usize = LAPS * ROWS_PER_LAP;
const T0: i64 = 1_700_000_000_123_456_789;
/// Rows whose brake value is null (a frame where the game did not say).
const NULL_BRAKES: [usize; 3] = [10, 20, 30];

/// The telemetry, column by column (so tests can compute what to expect).
struct Telemetry {
    t_ns: Vec<i64>,
    speed_kmh: Vec<f32>,
    rpm: Vec<f32>,
    gear: Vec<i32>,
    gas: Vec<f32>,
    brake: Vec<Option<f32>>,
    steer: Vec<f32>,
    lap: Vec<i32>,
    spline: Vec<f32>,
}

/// A lap of a made-up track: straights and four corners, 100 Hz.
fn telemetry() -> Telemetry {
    let mut t = Telemetry {
        t_ns: Vec::new(),
        speed_kmh: Vec::new(),
        rpm: Vec::new(),
        gear: Vec::new(),
        gas: Vec::new(),
        brake: Vec::new(),
        steer: Vec::new(),
        lap: Vec::new(),
        spline: Vec::new(),
    };
    for i in 0..ROWS {
        let lap = i / ROWS_PER_LAP;
        let spline = (i % ROWS_PER_LAP) as f32 / ROWS_PER_LAP as f32;
        // Four corners per lap: speed dips to 80 km/h at each apex.
        let phase = (spline * 4.0).fract();
        let corner = (phase - 0.8).abs() < 0.1;
        let speed = if corner {
            80.0 + 1000.0 * (phase - 0.8).abs()
        } else {
            180.0 + 100.0 * (1.0 - ((phase - 0.35) * 2.4).powi(2)).max(0.0)
        };
        let gear = ((speed / 50.0) as i32 + 1).clamp(1, 6);
        let rpm = 4000.0 + (speed * 37.0) % 4500.0;
        let braking = corner && phase < 0.8;
        t.t_ns.push(T0 + i as i64 * 10_000_000);
        t.speed_kmh.push(speed);
        t.rpm.push(rpm);
        t.gear.push(gear);
        t.gas.push(if braking {
            0.0
        } else if corner {
            0.4
        } else {
            1.0
        });
        t.brake.push(if NULL_BRAKES.contains(&i) {
            None
        } else if braking {
            Some(0.9)
        } else {
            Some(0.0)
        });
        t.steer.push(if corner { 0.5 - phase } else { 0.0 });
        t.lap.push(lap as i32);
        t.spline.push(spline);
    }
    t
}

fn write_parquet(path: &Path, t: &Telemetry) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("t_ns", DataType::Int64, false),
        Field::new("game", DataType::Utf8, false),
        Field::new("session", DataType::Utf8, false),
        Field::new("car_model", DataType::Utf8, true),
        Field::new("track", DataType::Utf8, true),
        Field::new("speed_kmh", DataType::Float32, false),
        Field::new("gas", DataType::Float32, false),
        Field::new("brake", DataType::Float32, true),
        Field::new("gear", DataType::Int32, false),
        Field::new("steer", DataType::Float32, false),
        Field::new("rpm", DataType::Float32, false),
        Field::new("lap", DataType::Int32, false),
        Field::new("spline", DataType::Float32, false),
    ]));
    let file = File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(5000))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    // Several batches, as a recorder writes them.
    for start in (0..ROWS).step_by(4000) {
        let end = (start + 4000).min(ROWS);
        let n = end - start;
        let sessions: Vec<&str> = (start..end)
            .map(|i| if i < ROWS / 2 { "rig-1" } else { "rig-2" })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(t.t_ns[start..end].to_vec())),
            Arc::new(StringArray::from(vec!["assetto_corsa"; n])),
            Arc::new(StringArray::from(sessions)),
            Arc::new(StringArray::from(vec![Some("ks_porsche_911_gt3_r"); n])),
            Arc::new(StringArray::from(vec![Some("monza"); n])),
            Arc::new(Float32Array::from(t.speed_kmh[start..end].to_vec())),
            Arc::new(Float32Array::from(t.gas[start..end].to_vec())),
            Arc::new(Float32Array::from(t.brake[start..end].to_vec())),
            Arc::new(Int32Array::from(t.gear[start..end].to_vec())),
            Arc::new(Float32Array::from(t.steer[start..end].to_vec())),
            Arc::new(Float32Array::from(t.rpm[start..end].to_vec())),
            Arc::new(Int32Array::from(t.lap[start..end].to_vec())),
            Arc::new(Float32Array::from(t.spline[start..end].to_vec())),
        ];
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    parquet: PathBuf,
    data: Telemetry,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("ac_monza.parquet");
    let data = telemetry();
    write_parquet(&parquet, &data);
    Fixture {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        parquet,
        data,
    }
}

/// The statistics line of `column` (split on whitespace).
fn stats_row(stdout: &str, column: &str) -> Vec<String> {
    let stats = stdout
        .split("statistics (")
        .nth(1)
        .expect("a statistics section");
    stats
        .lines()
        .find(|line| line.split_whitespace().next() == Some(column))
        .unwrap_or_else(|| panic!("no statistics row for {column} in:\n{stats}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn inspect_prints_schema_rows_and_statistics() {
    let f = fixture();
    let out = run(&["inspect", f.parquet.to_str().unwrap(), "-n", "5"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));

    assert!(stdout.contains("rows:       18,000"), "{stdout}");
    assert!(stdout.contains("row groups: 4"), "{stdout}");
    assert!(stdout.contains("columns:    13"), "{stdout}");
    // Schema: every column with its type.
    let schema = stdout.split("schema:").nth(1).unwrap();
    for (name, kind) in [("t_ns", "int64"), ("game", "string"), ("gear", "int32")] {
        assert!(
            schema
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)
                    && l.split_whitespace().nth(2) == Some(kind)),
            "{name} {kind} in {schema}"
        );
    }

    // The first 5 rows, aligned under their headers.
    let table = stdout
        .split("first 5 of 18,000 rows:\n")
        .nth(1)
        .expect("a table of the first rows");
    let lines: Vec<&str> = table.lines().take(8).collect();
    let headers: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(headers[0], "t_ns");
    assert_eq!(headers.len(), 13);
    assert!(lines[1].starts_with('─'));
    let first: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(first[0], T0.to_string());
    assert_eq!(first[1], "assetto_corsa");
    let second: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(second[0], (T0 + 10_000_000).to_string());
    // Right-aligned numbers end in the same column as their header.
    let speed_end = lines[0].find("speed_kmh").unwrap() + "speed_kmh".len();
    assert_eq!(
        &lines[2][..speed_end].trim_end().len(),
        &speed_end,
        "{}",
        lines[2]
    );
    assert!(lines[7].is_empty(), "only 5 rows: {table}");

    // Statistics, checked against the data.
    let d = &f.data;
    let t_ns = stats_row(&stdout, "t_ns");
    assert_eq!(t_ns[2], ROWS.to_string());
    assert_eq!(t_ns[3], "0");
    assert_eq!(t_ns[4], T0.to_string());
    assert_eq!(t_ns[5], (T0 + (ROWS as i64 - 1) * 10_000_000).to_string());
    // The mean of the times, exact (an f64 cannot hold them).
    assert_eq!(
        t_ns[6],
        (T0 as i128 + (ROWS as i128 - 1) * 5_000_000).to_string()
    );

    let speed = stats_row(&stdout, "speed_kmh");
    let min = d.speed_kmh.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = d
        .speed_kmh
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max);
    let mean = d.speed_kmh.iter().map(|v| *v as f64).sum::<f64>() / ROWS as f64;
    assert_eq!(speed[4], format_float(min as f64));
    assert_eq!(speed[5], format_float(max as f64));
    assert_eq!(speed[6], format_float(mean));

    let gear = stats_row(&stdout, "gear");
    let gear_mean = d.gear.iter().map(|g| *g as f64).sum::<f64>() / ROWS as f64;
    assert_eq!(
        &gear[2..7],
        &[
            ROWS.to_string(),
            "0".to_string(),
            d.gear.iter().min().unwrap().to_string(),
            d.gear.iter().max().unwrap().to_string(),
            format_float(gear_mean)
        ]
    );

    let brake = stats_row(&stdout, "brake");
    assert_eq!(brake[2], (ROWS - NULL_BRAKES.len()).to_string());
    assert_eq!(brake[3], NULL_BRAKES.len().to_string());

    // Text: distinct values.
    let session = stats_row(&stdout, "session");
    assert_eq!(session[1], "string");
    assert_eq!(session.last().unwrap(), "2", "{session:?}");
    let game = stats_row(&stdout, "game");
    assert_eq!(game.last().unwrap(), "1");
}

#[test]
fn inspect_selects_columns_in_the_given_order() {
    let f = fixture();
    let out = run(&[
        "inspect",
        f.parquet.to_str().unwrap(),
        "-n",
        "3",
        "--columns",
        "rpm",
        "gear",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    let table = stdout.split("first 3 of 18,000 rows:\n").nth(1).unwrap();
    let mut lines = table.lines();
    let headers: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(headers, ["rpm", "gear"]);
    lines.next();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            format_float(f.data.rpm[0] as f64),
            f.data.gear[0].to_string()
        ]
    );
    let stats = stdout.split("statistics (").nth(1).unwrap();
    let names: Vec<&str> = stats
        .lines()
        .skip(3)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["rpm", "gear"]);
}

#[test]
fn inspect_unknown_column_lists_the_columns() {
    let f = fixture();
    let out = run(&[
        "inspect",
        f.parquet.to_str().unwrap(),
        "--columns",
        "rpm",
        "sped_kmh",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown column `sped_kmh`"), "{stderr}");
    assert!(stderr.contains("did you mean `speed_kmh`?"), "{stderr}");
    assert!(stderr.contains("t_ns, game, session"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed before the error");
}

#[test]
fn inspect_writes_the_selected_columns_as_csv() {
    let f = fixture();
    let csv = f.dir.join("out.csv");
    let out = run(&[
        "inspect",
        f.parquet.to_str().unwrap(),
        "-n",
        "0",
        "-c",
        "t_ns",
        "speed_kmh",
        "brake",
        "game",
        "--to-csv",
        csv.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains("wrote 18,000 rows of 4 columns"),
        "{stdout}"
    );
    let content = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), ROWS + 1);
    assert_eq!(lines[0], "t_ns,speed_kmh,brake,game");
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0], f.data.t_ns[i].to_string());
        // Full precision: the text reads back as the same f32.
        assert_eq!(fields[1].parse::<f32>().unwrap(), f.data.speed_kmh[i]);
        match f.data.brake[i] {
            Some(brake) => assert_eq!(fields[2].parse::<f32>().unwrap(), brake),
            None => assert_eq!(fields[2], "", "null brake at row {i}"),
        }
        assert_eq!(fields[3], "assetto_corsa");
    }
}

#[test]
fn inspect_explains_missing_and_non_parquet_files() {
    let f = fixture();
    let missing = f.dir.join("nope.parquet");
    let out = run(&["inspect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot open"), "{stderr}");
    assert!(stderr.contains("nope.parquet"), "{stderr}");

    let json = f.dir.join("frames.jsonl");
    std::fs::write(&json, "{\"time_ns\":1}\n").unwrap();
    let out = run(&["inspect", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not a Parquet file"), "{stderr}");
    assert!(stderr.contains("PAR1"), "{stderr}");

    // A recording whose writer never wrote the footer.
    let cut = f.dir.join("cut.parquet");
    let bytes = std::fs::read(&f.parquet).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&["plot", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no footer"), "{stderr}");
}

/// Decode a PNG: (width, height, RGB bytes).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buffer.truncate(info.buffer_size());
    (info.width, info.height, buffer)
}

fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
    let i = (y as usize * width as usize + x as usize) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

#[test]
fn plot_draws_the_default_panels() {
    let f = fixture();
    let png_path = f.dir.join("lap.png");
    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "-o",
        png_path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains("speed_kmh, rpm, gear, gas, brake, steer from 18000 rows"),
        "{stdout}"
    );
    let (width, height, rgb) = decode_png(&png_path);
    assert_eq!((width, height), (1600, 76 + 6 * 300));

    // The plot area holds many colours (lines, grid, text antialiasing), and the panels'
    // own line colours: speed blue, gas green, brake red.
    let mut colours = HashSet::new();
    for y in 76..height {
        for x in 0..width {
            colours.insert(pixel(&rgb, width, x, y));
        }
    }
    assert!(colours.len() > 20, "only {} colours", colours.len());
    for line in [[31, 119, 180], [44, 160, 44], [214, 39, 40]] {
        assert!(colours.contains(&line), "no pixel of {line:?}");
    }
    // Each line stays in its panel: brake red only in the fifth panel.
    let panel_of = |y: u32| (y - 76) / 300;
    let red_panels: HashSet<u32> = (76..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&rgb, width, x, y) == [214, 39, 40])
        .map(|(_, y)| panel_of(y))
        .collect();
    assert_eq!(red_panels, HashSet::from([4]));
    // The title line has dark text.
    let dark = (0..76)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&rgb, width, x, y).iter().all(|c| *c < 80))
        .count();
    assert!(dark > 200, "title text: {dark} dark pixels");
}

#[test]
fn plot_one_lap_against_distance() {
    let f = fixture();
    let png_path = f.dir.join("lap1.png");
    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "--cols",
        "speed_kmh",
        "gear",
        "--lap",
        "1",
        "--x",
        "distance",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(stdout.contains("from 6000 rows"), "{stdout}");
    let (width, height, rgb) = decode_png(&png_path);
    assert_eq!((width, height), (1600, 76 + 2 * 300));
    // The speed line spans the whole lap: blue pixels in the left and the right tenth.
    let blue_x: Vec<u32> = (76..376)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&rgb, width, x, y) == [31, 119, 180])
        .map(|(x, _)| x)
        .collect();
    assert!(blue_x.iter().any(|x| *x < 200), "line starts at the left");
    assert!(blue_x.iter().any(|x| *x > 1400), "line reaches the right");

    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "--lap",
        "9",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no rows of lap 9"), "{stderr}");
    assert!(stderr.contains("laps 0 to 2"), "{stderr}");
}

#[test]
fn plot_limit_keeps_the_first_rows() {
    let f = fixture();
    let png_path = f.dir.join("first.png");
    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "-c",
        "rpm",
        "--limit",
        "500",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(stdout.contains("rpm from 500 rows"), "{stdout}");
    assert_eq!(decode_png(&png_path).1, 76 + 300);
}

#[test]
fn plot_refuses_unknown_and_text_columns() {
    let f = fixture();
    let png_path = f.dir.join("bad.png");
    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "-c",
        "rmp",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown column `rmp`"), "{stderr}");
    assert!(stderr.contains("did you mean `rpm`?"), "{stderr}");

    let out = run(&[
        "plot",
        f.parquet.to_str().unwrap(),
        "-c",
        "game",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("column `game` holds string"), "{stderr}");
    assert!(
        stderr.contains("numeric columns: t_ns, speed_kmh"),
        "{stderr}"
    );
    assert!(!png_path.exists());
}

#[test]
fn plot_without_numeric_columns_says_so() {
    let f = fixture();
    let path = f.dir.join("names.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "driver",
        DataType::Utf8,
        false,
    )]));
    let mut writer =
        ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
    let column: ArrayRef = Arc::new(StringArray::from(vec!["LEC", "HAM"]));
    writer
        .write(&RecordBatch::try_new(schema, vec![column]).unwrap())
        .unwrap();
    writer.close().unwrap();
    let out = run(&["plot", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("has no numeric column to plot"), "{stderr}");
}

#[test]
fn plot_font_override_must_exist() {
    let f = fixture();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitwall-flow"))
        .args(["plot", f.parquet.to_str().unwrap()])
        .env("PITWALL_FONT", f.dir.join("missing.ttf"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no font to draw text with"), "{stderr}");
    assert!(stderr.contains("PITWALL_FONT"), "{stderr}");
}

/// A file as the `parquet` sink writes car telemetry: `time_ns`, `kind`, the record's field
/// names (`throttle`, `steering`, `completed_laps`), float64 numbers, arrays as JSON text.
fn write_sink_shaped(path: &Path) {
    let rows = 4000usize;
    let schema = Arc::new(Schema::new(vec![
        Field::new("time_ns", DataType::Int64, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("game", DataType::Utf8, true),
        Field::new("track", DataType::Utf8, true),
        Field::new("speed_kmh", DataType::Float64, true),
        Field::new("throttle", DataType::Float64, true),
        Field::new("brake", DataType::Float64, true),
        Field::new("steering", DataType::Float64, true),
        Field::new("gear", DataType::Int64, true),
        Field::new("rpm", DataType::Float64, true),
        Field::new("acc_g", DataType::Utf8, true),
        Field::new("spline", DataType::Float64, true),
        Field::new("completed_laps", DataType::Int64, true),
    ]));
    let spline: Vec<f64> = (0..rows).map(|i| (i % 2000) as f64 / 2000.0).collect();
    let speed: Vec<f64> = spline
        .iter()
        .map(|s| 150.0 + 100.0 * (s * 12.0).sin())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            (0..rows as i64).map(|i| T0 + i * 16_666_667),
        )),
        Arc::new(StringArray::from(vec!["car_telemetry"; rows])),
        Arc::new(StringArray::from(vec!["rfactor2"; rows])),
        Arc::new(StringArray::from(vec!["Le Mans"; rows])),
        Arc::new(arrow_array::Float64Array::from(speed.clone())),
        Arc::new(arrow_array::Float64Array::from(vec![1.0; rows])),
        Arc::new(arrow_array::Float64Array::from(vec![0.0; rows])),
        Arc::new(arrow_array::Float64Array::from(vec![0.1; rows])),
        Arc::new(Int64Array::from_iter_values(
            speed.iter().map(|v| (*v / 50.0) as i64 + 1),
        )),
        Arc::new(arrow_array::Float64Array::from_iter_values(
            speed.iter().map(|v| 3000.0 + v * 25.0),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("[{},0.0,-0.5]", i % 3)),
        )),
        Arc::new(arrow_array::Float64Array::from(spline)),
        Arc::new(Int64Array::from_iter_values(
            (0..rows).map(|i| i as i64 / 2000),
        )),
    ];
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), None).unwrap();
    writer
        .write(&RecordBatch::try_new(schema, columns).unwrap())
        .unwrap();
    writer.close().unwrap();
}

#[test]
fn the_parquet_sinks_car_telemetry_files_work_too() {
    let f = fixture();
    let path = f.dir.join("car_telemetry-20251122T070000-0.parquet");
    write_sink_shaped(&path);

    let out = run(&["inspect", path.to_str().unwrap(), "-n", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert_eq!(stats_row(&stdout, "acc_g").last().unwrap(), "3");
    assert_eq!(stats_row(&stdout, "completed_laps")[5], "1");

    // The sink's field names are among the defaults; laps follow on with --x distance.
    let png_path = f.dir.join("sink.png");
    let out = run(&[
        "plot",
        path.to_str().unwrap(),
        "--x",
        "distance",
        "-o",
        png_path.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains("speed_kmh, rpm, gear, throttle, brake, steering from 4000 rows"),
        "{stdout}"
    );
    let (width, height, rgb) = decode_png(&png_path);
    assert_eq!((width, height), (1600, 76 + 6 * 300));
    // Two laps side by side (lap + spline): the speed line crosses the whole width.
    let blue_x: Vec<u32> = (76..376)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(&rgb, width, x, y) == [31, 119, 180])
        .map(|(x, _)| x)
        .collect();
    assert!(blue_x.iter().any(|x| *x < 200) && blue_x.iter().any(|x| *x > 1400));

    let out = run(&["plot", path.to_str().unwrap(), "--limit", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--limit 0 keeps no rows"));
}
