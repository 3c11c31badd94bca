use std::path::Path;

use pitwall_api::record::{RacePosition, Session, SessionEnd};
use pitwall_api::testing::{build_context, parse_config, run_over};
use serde_json::Value;

use super::*;
use crate::sample::{generate, SampleOptions, MONZA_CIRCUIT_JSON};

const KEY: &str = "9999";
const START_LINE: (f64, f64) = (-1389.0, -855.0);

/// A simulated race, read back as the records a source would emit.
struct Sample {
    _dir: tempfile::TempDir,
    laps: Vec<Lap>,
    grid: Vec<GridSlot>,
    results: Vec<SessionResultEntry>,
    lap_path: ReferencePath,
    pit_path: ReferencePath,
}

fn rows(dir: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// OpenF1 rows as records of session `KEY` (the grid is filed under the qualifying key).
fn records<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Vec<T> {
    rows(dir, name)
        .into_iter()
        .map(|mut row| {
            row["session_key"] = Value::from(KEY);
            serde_json::from_value(row).unwrap()
        })
        .collect()
}

fn ns(text: &str) -> i64 {
    parse_iso8601_ns(text).unwrap()
}

fn location(dir: &Path, driver: u32, from: i64, to: i64) -> Vec<(i64, f64, f64)> {
    rows(dir, &format!("location/{driver}"))
        .iter()
        .map(|r| {
            (
                ns(r["date"].as_str().unwrap()),
                r["x"].as_f64().unwrap(),
                r["y"].as_f64().unwrap(),
            )
        })
        .filter(|s| (from..=to).contains(&s.0))
        .collect()
}

fn sample() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&SampleOptions {
        laps: 3,
        cars: 8,
        seed: 77,
        out_dir: dir.path().to_path_buf(),
        ..SampleOptions::default()
    })
    .unwrap();
    let root = summary.dir.as_path();
    let laps: Vec<Lap> = records(root, "laps");
    let fastest = laps
        .iter()
        .filter(|l| l.lap_duration.is_some())
        .min_by(|a, b| a.lap_duration.unwrap().total_cmp(&b.lap_duration.unwrap()))
        .unwrap()
        .clone();
    let start = ns(fastest.date_start.as_deref().unwrap());
    let end = start + (fastest.lap_duration.unwrap() * 1e9) as i64;
    let lap_path = ReferencePath {
        session_key: KEY.into(),
        path: PathKind::Lap,
        car: fastest.driver_number,
        lap_number: Some(fastest.lap_number),
        samples: location(root, fastest.driver_number, start, end),
        sector_durations: vec![
            fastest.duration_sector_1.unwrap(),
            fastest.duration_sector_2.unwrap(),
            fastest.duration_sector_3.unwrap(),
        ],
    };
    let pit = &rows(root, "pit")[0];
    let entry = ns(pit["date"].as_str().unwrap());
    let lane = (pit["lane_duration"].as_f64().unwrap() * 1e9) as i64;
    let driver = pit["driver_number"].as_u64().unwrap() as u32;
    let pit_path = ReferencePath {
        session_key: KEY.into(),
        path: PathKind::PitLane,
        car: driver,
        lap_number: pit["lap_number"].as_u64().map(|n| n as u32),
        samples: location(root, driver, entry, entry + lane),
        sector_durations: Vec::new(),
    };
    Sample {
        laps,
        grid: records(root, "starting_grid"),
        results: records(root, "session_result"),
        lap_path,
        pit_path,
        _dir: dir,
    }
}

fn facts(sample: &Sample) -> Vec<Event> {
    let mut events = vec![Event::new(
        0,
        Record::Session(Arc::new(Session {
            session_key: KEY.into(),
            ..Session::default()
        })),
    )];
    events.extend(
        sample
            .laps
            .iter()
            .map(|l| Event::new(1, Record::Lap(Arc::new(l.clone())))),
    );
    events.extend(
        sample
            .grid
            .iter()
            .map(|g| Event::new(1, Record::StartingGrid(Arc::new(g.clone())))),
    );
    events.extend(
        sample
            .results
            .iter()
            .map(|r| Event::new(1, Record::SessionResult(Arc::new(r.clone())))),
    );
    events.push(Event::new(
        2,
        Record::ReferencePath(Arc::new(sample.lap_path.clone())),
    ));
    events.push(Event::new(
        2,
        Record::ReferencePath(Arc::new(sample.pit_path.clone())),
    ));
    events
}

fn end() -> Event {
    Event::new(
        3,
        Record::SessionEnd(SessionEnd {
            session_key: KEY.into(),
        }),
    )
}

fn layouts(events: &[Event]) -> Vec<Arc<TrackLayout>> {
    events
        .iter()
        .filter_map(|e| match &e.record {
            Record::TrackLayout(layout) => Some(layout.clone()),
            _ => None,
        })
        .collect()
}

fn metadatas(events: &[Event]) -> Vec<Arc<RaceMetadata>> {
    events
        .iter()
        .filter_map(|e| match &e.record {
            Record::RaceMetadata(metadata) => Some(metadata.clone()),
            _ => None,
        })
        .collect()
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

fn nearest(points: &[(i64, f64, f64)], p: (f64, f64)) -> f64 {
    points
        .iter()
        .map(|&(_, x, y)| distance((x, y), p))
        .fold(f64::MAX, f64::min)
}

#[tokio::test]
async fn layout_and_metadata_from_a_simulated_race() {
    let sample = sample();
    let mut events = facts(&sample);
    events.push(end());
    let config: TrackLayoutConfig = parse_config("max_points = 200");
    let mut component = config.build(&build_context("layout", ".")).unwrap();
    let out = run_over(component.as_mut(), events).await;
    // One batch that ends the session: the final versions, once each.
    let (layouts, metadatas) = (layouts(&out), metadatas(&out));
    assert_eq!((layouts.len(), metadatas.len()), (1, 1));
    let layout = &layouts[0];

    // The outline: the fastest lap's path, thinned but still the whole lap.
    assert!(
        (100..=200).contains(&layout.track_path.len()),
        "{}",
        layout.track_path.len()
    );
    let first = &layout.track_path[0];
    let last = &layout.track_path[layout.track_path.len() - 1];
    // The first sample comes up to one sample interval (~25 m) after the line; the loop
    // is closed.
    assert!(distance((first.x, first.y), START_LINE) < 300.0);
    assert_eq!((first.x, first.y), (last.x, last.y), "closes the loop");
    for p in &layout.track_path {
        assert!(
            nearest(&sample.lap_path.samples, (p.x, p.y)) < 1e-9,
            "points come from the path"
        );
    }
    // Thinning keeps the shape: every sample is close to the thinned outline.
    let outline: Vec<(f64, f64)> = layout.track_path.iter().map(|p| (p.x, p.y)).collect();
    for &(_, x, y) in &sample.lap_path.samples {
        let d = outline
            .windows(2)
            .map(|w| distance_to_segment((x, y), w[0], w[1]))
            .fold(f64::MAX, f64::min);
        assert!(d < 20.0, "sample {x},{y} is {d} from the thinned outline");
    }
    // The pit lane beside the main straight.
    assert!(layout.pit_path.len() >= 5);
    for p in &layout.pit_path {
        assert!(nearest(&sample.lap_path.samples, (p.x, p.y)) < 600.0);
    }
    // Bounds are exactly the extent of the track and pit points.
    let all: Vec<(f64, f64)> = layout
        .track_path
        .iter()
        .chain(&layout.pit_path)
        .map(|p| (p.x, p.y))
        .collect();
    let b = layout.bounds;
    assert!(all
        .iter()
        .all(|&(x, y)| (b.min_x..=b.max_x).contains(&x) && (b.min_y..=b.max_y).contains(&y)));
    assert_eq!(b.min_x, all.iter().map(|p| p.0).fold(f64::MAX, f64::min));
    assert_eq!(b.max_y, all.iter().map(|p| p.1).fold(f64::MIN, f64::max));
    assert!(b.max_x - b.min_x > 10_000.0 && b.max_y - b.min_y > 20_000.0);

    // Sector points: the line, then where the car was after sectors 1 and 1+2.
    let ids: Vec<&str> = layout.sector_points.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["Start/Finish", "Sector 1 End", "Sector 2 End"]);
    let at = |i: usize| (layout.sector_points[i].x, layout.sector_points[i].y);
    assert!(distance(at(0), START_LINE) < 30.0, "{:?}", at(0));
    for i in 1..3 {
        assert!(nearest(&sample.lap_path.samples, at(i)) < 400.0);
        assert!(
            distance(at(i), at(i - 1)) > 3000.0,
            "sector points are spread out"
        );
    }

    // The documents' JSON shapes are FORMATS.md section 3's.
    let json = serde_json::to_value(layout.as_ref()).unwrap();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["bounds", "pit_path", "sector_points", "track_path"]);
    assert_eq!(
        json["bounds"].as_object().unwrap().len(),
        4,
        "min_x, max_x, min_y, max_y"
    );
    assert!(json["track_path"][0]["x"].is_f64() && json["sector_points"][0]["id"].is_string());

    // Metadata.
    let metadata = &metadatas[0];
    let result = |p: u32| {
        sample
            .results
            .iter()
            .find(|r| r.position == Some(p))
            .unwrap()
            .driver_number
    };
    assert_eq!(metadata.race_winner, Some(result(1)));
    assert_eq!(
        metadata.podium_drivers,
        vec![result(1), result(2), result(3)]
    );
    let pole = sample.grid.iter().find(|g| g.position == 1).unwrap();
    let pole_start = sample
        .laps
        .iter()
        .find(|l| l.driver_number == pole.driver_number && l.lap_number == 1)
        .and_then(|l| l.date_start.as_deref())
        .map(ns)
        .unwrap();
    assert_eq!(metadata.reference_start_ns, pole_start - 20_000_000_000);
    assert_eq!(
        metadata.reference_start_time,
        format_iso8601_ns(pole_start - 20_000_000_000)
    );
    let fastest = metadata.fastest_lap.as_ref().unwrap();
    assert_eq!(fastest.driver_number, sample.lap_path.car);
    assert_eq!(Some(fastest.lap_number), sample.lap_path.lap_number);
    let sectors = fastest.sector_1.unwrap() + fastest.sector_2.unwrap() + fastest.sector_3.unwrap();
    assert!((sectors - fastest.lap_time).abs() < 0.005);
    let json = serde_json::to_value(metadata.as_ref()).unwrap();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "fastest_lap",
            "podium_drivers",
            "race_winner",
            "reference_start_time",
            "session_key"
        ]
    );
    let mut keys: Vec<&String> = json["fastest_lap"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "driver_number",
            "lap_number",
            "lap_time",
            "sector_1",
            "sector_2",
            "sector_3"
        ]
    );
}

#[test]
fn emits_only_what_changed_and_final_versions_at_the_end() {
    let sample = sample();
    let mut builder = LayoutBuilder::new(&TrackLayoutConfig::default(), None);
    let lap = |l: &Lap| Event::new(10, Record::Lap(Arc::new(l.clone())));
    let grid: Vec<Event> = sample
        .grid
        .iter()
        .map(|g| Event::new(10, Record::StartingGrid(Arc::new(g.clone()))))
        .collect();

    // The grid and the first laps: metadata (reference start), no outline yet.
    let mut first: Vec<Event> = sample
        .laps
        .iter()
        .filter(|l| l.lap_number == 1)
        .map(lap)
        .collect();
    first.extend(grid.iter().cloned());
    let out = builder.observe_batch(&first);
    assert_eq!((layouts(&out).len(), metadatas(&out).len()), (0, 1));
    assert!(metadatas(&out)[0].fastest_lap.is_none());
    assert!(metadatas(&out)[0].race_winner.is_none());

    // The same facts again change nothing.
    assert!(builder.observe_batch(&first).is_empty());

    // A completed lap 2 brings a fastest lap; the lap path brings the layout.
    let second: Vec<Event> = sample
        .laps
        .iter()
        .filter(|l| l.lap_number == 2)
        .map(lap)
        .collect();
    let out = builder.observe_batch(&second);
    assert_eq!((layouts(&out).len(), metadatas(&out).len()), (0, 1));
    assert!(metadatas(&out)[0].fastest_lap.is_some());
    let path = Event::new(20, Record::ReferencePath(Arc::new(sample.lap_path.clone())));
    let out = builder.observe_batch(std::slice::from_ref(&path));
    assert_eq!((layouts(&out).len(), metadatas(&out).len()), (1, 0));
    assert!(layouts(&out)[0].pit_path.is_empty());
    assert_eq!(out[0].time_ns, 20);

    // Live race positions stand in for the podium until there is a result.
    let position = |car: u32, position: u32, time: i64| {
        Event::new(
            time,
            Record::RacePosition(RacePosition {
                session_key: KEY.into(),
                car,
                position,
            }),
        )
    };
    let cars: Vec<u32> = sample.grid.iter().map(|g| g.driver_number).collect();
    let out = builder.observe_batch(&[
        position(cars[0], 1, 30),
        position(cars[1], 2, 30),
        position(cars[2], 3, 30),
        // An older event does not override a newer one.
        position(cars[0], 5, 25),
    ]);
    let metadata = &metadatas(&out)[0];
    assert_eq!(metadata.race_winner, Some(cars[0]));
    assert_eq!(metadata.podium_drivers, cars[..3].to_vec());
    let out = builder.observe_batch(&[position(cars[1], 1, 31), position(cars[0], 2, 31)]);
    assert_eq!(
        metadatas(&out)[0].podium_drivers,
        vec![cars[1], cars[0], cars[2]]
    );

    // The classification wins over positions.
    let results: Vec<Event> = sample
        .results
        .iter()
        .map(|r| Event::new(40, Record::SessionResult(Arc::new(r.clone()))))
        .collect();
    let out = builder.observe_batch(&results);
    let winner = sample
        .results
        .iter()
        .find(|r| r.position == Some(1))
        .unwrap();
    assert_eq!(metadatas(&out)[0].race_winner, Some(winner.driver_number));

    // The end of the session re-emits both, final.
    let out = builder.observe_batch(&[end()]);
    assert_eq!((layouts(&out).len(), metadatas(&out).len()), (1, 1));
    // Records of other kinds are ignored.
    assert!(builder
        .observe_batch(&[Event::new(50, Record::Tick)])
        .is_empty());
}

#[test]
fn circuit_info_gives_the_outline_and_thirds_until_a_lap_is_timed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("monza.json"), MONZA_CIRCUIT_JSON).unwrap();
    let config: TrackLayoutConfig = parse_config("circuit_info = \"monza.json\"\nmax_points = 120");
    assert!(config.check().is_empty());
    // The file is read (relative to the pipeline's directory) when the component is built.
    assert!(config.build(&build_context("layout", dir.path())).is_ok());
    let outline = Arc::new(parse_circuit_outline(MONZA_CIRCUIT_JSON).unwrap());
    let mut builder = LayoutBuilder::new(&config, Some(outline.clone()));
    let session = Event::new(
        5,
        Record::Session(Arc::new(Session {
            session_key: KEY.into(),
            ..Session::default()
        })),
    );
    let out = builder.observe_batch(&[session]);
    let layout = &layouts(&out)[0];
    assert!(layout.track_path.len() <= 120 && layout.track_path.len() > 50);
    assert_eq!((layout.track_path[0].x, layout.track_path[0].y), outline[0]);
    // Start/Finish at the first point, sector ends a third and two thirds round.
    let sp = &layout.sector_points;
    assert_eq!((sp[0].x, sp[0].y), outline[0]);
    let length: f64 = outline.windows(2).map(|w| distance(w[0], w[1])).sum();
    let along = |p: (f64, f64)| -> f64 {
        // Distance along the outline to the point nearest p.
        let mut walked = 0.0;
        let mut best = (f64::MAX, 0.0);
        for w in outline.windows(2) {
            let d = distance_to_segment(p, w[0], w[1]);
            if d < best.0 {
                best = (d, walked + distance(w[0], p));
            }
            walked += distance(w[0], w[1]);
        }
        best.1
    };
    assert!((along((sp[1].x, sp[1].y)) - length / 3.0).abs() < 50.0);
    assert!((along((sp[2].x, sp[2].y)) - 2.0 * length / 3.0).abs() < 50.0);
    // Bounds of the MultiViewer outline (thinning keeps the extreme points here).
    let b = layout.bounds;
    assert!(b.min_x >= -1500.0 && b.max_x <= 11069.0 && b.min_y >= -5805.0 && b.max_y <= 15891.0);
    assert!(b.max_x - b.min_x > 12_000.0 && b.max_y - b.min_y > 21_000.0);
    assert!(builder.metadata(&KEY.into()).is_none(), "no laps yet");
}

#[test]
fn an_unreadable_circuit_info_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        "{\"x\": [1, 2], \"y\": [1]}",
    )
    .unwrap();
    for file in ["missing.json", "broken.json"] {
        let config: TrackLayoutConfig = parse_config(&format!("circuit_info = \"{file}\""));
        let error = config
            .build(&build_context("layout", dir.path()))
            .err()
            .expect("build fails");
        assert!(error.to_string().contains("circuit_info"), "{error}");
        assert!(error.to_string().contains(file), "{error}");
    }
}

#[test]
fn lead_in_and_option_checks() {
    let sample = sample();
    let config: TrackLayoutConfig = parse_config("lead_in_s = 30.0");
    let mut builder = LayoutBuilder::new(&config, None);
    builder.observe_batch(&facts(&sample));
    let default = {
        let mut builder = LayoutBuilder::new(&TrackLayoutConfig::default(), None);
        builder.observe_batch(&facts(&sample));
        builder.metadata(&KEY.into()).unwrap()
    };
    let metadata = builder.metadata(&KEY.into()).unwrap();
    assert_eq!(
        default.reference_start_ns - metadata.reference_start_ns,
        10_000_000_000
    );
    let bad: TrackLayoutConfig = parse_config("max_points = 2\nlead_in_s = -1.0");
    let keys: Vec<String> = bad.check().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["max_points", "lead_in_s"]);
}

#[test]
fn thinning_keeps_shape_and_ends() {
    let circle: Vec<(f64, f64)> = (0..=1000)
        .map(|i| {
            let a = i as f64 / 1000.0 * std::f64::consts::TAU;
            (1000.0 * a.cos(), 1000.0 * a.sin())
        })
        .collect();
    let thinned = thin(&circle, 60);
    assert!(
        thinned.len() <= 60 && thinned.len() >= 40,
        "{}",
        thinned.len()
    );
    assert_eq!(thinned[0], circle[0]);
    assert_eq!(thinned[thinned.len() - 1], circle[1000]);
    for &p in &circle {
        let d = thinned
            .windows(2)
            .map(|w| distance_to_segment(p, w[0], w[1]))
            .fold(f64::MAX, f64::min);
        assert!(d < 5.0, "{d}");
    }
    // A straight line thins to its ends; short paths are left alone.
    let line: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, 0.0)).collect();
    assert_eq!(thin(&line, 10), vec![(0.0, 0.0), (99.0, 0.0)]);
    assert_eq!(thin(&circle[..5], 10), circle[..5].to_vec());
}
