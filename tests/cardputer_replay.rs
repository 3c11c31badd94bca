//! The main job end to end: the shipped `cardputer-replay` pipeline on the bundled sample,
//! run by the real binary, read by clients that parse frames the way the Pocket Pitwall
//! firmware does (split on `|`, first field the clock, chunks of exactly three commas).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{free_port, get_json, main_job, Client, Running, Workspace};

/// One frame as the firmware reads it: the clock and the cars, skipping malformed chunks.
fn parse_frame(text: &str) -> (i64, Vec<(u32, i64, i64, u32)>) {
    let mut fields = text.split('|');
    let clock = fields
        .next()
        .unwrap()
        .parse::<i64>()
        .expect("the clock is an integer");
    let cars = fields
        .filter(|chunk| chunk.matches(',').count() == 3)
        .map(|chunk| {
            let parts: Vec<&str> = chunk.split(',').collect();
            (
                parts[0].parse().expect("driver is an integer"),
                parts[1].parse().expect("x is an integer"),
                parts[2].parse().expect("y is an integer"),
                parts[3].parse().expect("position is an integer"),
            )
        })
        .collect();
    (clock, cars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_serves_documents_and_ten_frames_a_second() {
    let workspace = Workspace::new();
    let (port, admin) = (free_port(), free_port());
    workspace.write_pipeline(&main_job(port, admin, "1.0"));
    let running = Running::start(&workspace).await;
    running.wait_healthy(admin).await;
    let base = format!("http://127.0.0.1:{port}/session/9999");

    // Documents, field by field, as the firmware reads them.
    let drivers = get_json(&format!("{base}/drivers")).await;
    let drivers = drivers.as_array().unwrap();
    assert!(drivers.len() >= 20, "{} drivers", drivers.len());
    for driver in drivers {
        assert!(driver["driver_number"].as_u64().is_some());
        assert_eq!(driver["name_acronym"].as_str().unwrap().len(), 3);
        let colour = driver["team_colour"].as_str().unwrap();
        assert!(
            colour.len() == 6 && u32::from_str_radix(colour, 16).is_ok(),
            "{colour}"
        );
    }
    let layout = get_json(&format!("{base}/track_layout")).await;
    let bounds = &layout["bounds"];
    let (min_x, max_x) = (
        bounds["min_x"].as_f64().unwrap(),
        bounds["max_x"].as_f64().unwrap(),
    );
    let (min_y, max_y) = (
        bounds["min_y"].as_f64().unwrap(),
        bounds["max_y"].as_f64().unwrap(),
    );
    assert!(layout["track_path"].as_array().unwrap().len() > 50);
    for point in layout["track_path"]
        .as_array()
        .unwrap()
        .iter()
        .chain(layout["pit_path"].as_array().unwrap())
    {
        let (x, y) = (point["x"].as_f64().unwrap(), point["y"].as_f64().unwrap());
        assert!(
            (min_x..=max_x).contains(&x) && (min_y..=max_y).contains(&y),
            "bounds cover every point"
        );
    }
    let ids: Vec<&str> = layout["sector_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Start/Finish", "Sector 1 End", "Sector 2 End"]);
    let metadata = get_json(&format!("{base}/race_metadata")).await;
    assert_eq!(metadata["session_key"], "9999");
    assert_eq!(metadata["podium_drivers"].as_array().unwrap().len(), 3);
    assert_eq!(metadata["podium_drivers"][0], metadata["race_winner"]);
    let fastest = &metadata["fastest_lap"];
    let sectors: f64 = ["sector_1", "sector_2", "sector_3"]
        .iter()
        .map(|s| fastest[s].as_f64().unwrap())
        .sum();
    assert!(
        (sectors - fastest["lap_time"].as_f64().unwrap()).abs() < 0.01,
        "sectors add up to the lap"
    );
    let missing = reqwest::get(format!("{base}/no_such_document"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Frames: grammar, rate, cars inside the track's bounds, positions 1..=20.
    let client = Client::connect(port, "9999").await;
    client.wait_for_frames(1).await;
    let first_at = Instant::now();
    let first = client.frames();
    let mut clocks = Vec::new();
    let mut last_seen = String::new();
    while first_at.elapsed() < Duration::from_secs(3) {
        let text = client.last.lock().unwrap().clone();
        if text != last_seen {
            let (clock, cars) = parse_frame(&text);
            clocks.push(clock);
            assert!(cars.len() >= 20, "every car is in the frame: {text}");
            let mut positions: Vec<u32> = cars.iter().map(|c| c.3).collect();
            positions.sort();
            assert_eq!(
                positions,
                (1..=cars.len() as u32).collect::<Vec<_>>(),
                "{text}"
            );
            for (_, x, y, _) in &cars {
                let margin = 50.0;
                assert!(
                    (*x as f64) >= min_x - margin && (*x as f64) <= max_x + margin,
                    "{text}"
                );
                assert!(
                    (*y as f64) >= min_y - margin && (*y as f64) <= max_y + margin,
                    "{text}"
                );
            }
            last_seen = text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_second = (client.frames() - first) as f64 / first_at.elapsed().as_secs_f64();
    assert!(
        (7.0..=13.0).contains(&per_second),
        "{per_second:.1} frames/s"
    );
    assert!(
        clocks
            .windows(2)
            .all(|w| w[1] > w[0] && (w[1] - w[0]) % 100 == 0),
        "{clocks:?}"
    );

    // An unknown session is closed with 4004.
    let stranger = Client::connect(port, "1234").await;
    support::wait_until("the unknown session is closed", || stranger.closed()).await;
    assert_eq!(*stranger.close_code.lock().unwrap(), Some(4004));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_replay_ends_with_finished_and_positions_match_the_input() {
    let workspace = Workspace::new();
    let (port, admin) = (free_port(), free_port());
    // As fast as possible: the client sees the end at once.
    workspace.write_pipeline(&main_job(port, admin, "0").replace(
        "[admin]",
        "[sinks.log]\ntype = \"file\"\ninputs = [\"frames\"]\npath = \"frames.ndjson\"\n\n[admin]",
    ));
    let running = Running::start(&workspace).await;
    running.wait_healthy(admin).await;
    let client = Client::connect(port, "9999").await;
    support::wait_until("FINISHED is sent", || {
        client.last.lock().unwrap().ends_with("|FINISHED")
    })
    .await;
    let finished = client.last.lock().unwrap().clone();
    let clock: i64 = finished.split('|').next().unwrap().parse().unwrap();

    // The recorded frames: the last one's clock is the FINISHED clock, and each car's
    // position in the last frame equals the final classification of the input data.
    let recorded = workspace.path("frames.ndjson");
    support::wait_until("frames are recorded", || {
        std::fs::read_to_string(&recorded)
            .map(|t| t.contains(&format!("\"t_ms\":{clock},")))
            .unwrap_or(false)
    })
    .await;
    let text = std::fs::read_to_string(&recorded).unwrap();
    let last: serde_json::Value = text
        .lines()
        .rev()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["kind"] == "frame")
        .expect("frames were recorded");
    assert_eq!(last["t_ms"], clock);
    let results = get_json(&format!(
        "http://127.0.0.1:{port}/session/9999/session_result"
    ))
    .await;
    let classified: HashMap<u64, u64> = results
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some((r["driver_number"].as_u64()?, r["position"].as_u64()?)))
        .collect();
    let mut matched = 0;
    for car in last["cars"].as_array().unwrap() {
        if let Some(position) = classified.get(&car["car"].as_u64().unwrap()) {
            assert_eq!(
                car["position"].as_u64(),
                Some(*position),
                "car {}",
                car["car"]
            );
            matched += 1;
        }
    }
    assert!(matched >= 19, "{matched} cars matched the classification");
    running.stop().await;
}

/// The public Pocket Pitwall firmware has session 9523 compiled in and no setting for it:
/// exactly its requests get the main job's sample race, as under its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unchanged_firmware_sees_the_sample_race() {
    let workspace = Workspace::new();
    let (port, admin) = (free_port(), free_port());
    workspace.write_pipeline(&main_job(port, admin, "1.0"));
    let running = Running::start(&workspace).await;
    running.wait_healthy(admin).await;
    for name in ["drivers", "track_layout", "race_metadata"] {
        let firmware = get_json(&format!("http://127.0.0.1:{port}/session/9523/{name}")).await;
        let own = get_json(&format!("http://127.0.0.1:{port}/session/9999/{name}")).await;
        assert_eq!(firmware, own, "{name}");
    }
    let firmware = Client::connect(port, "9523").await;
    firmware.wait_for_frames(5).await;
    let (clock, cars) = parse_frame(&firmware.last.lock().unwrap());
    assert!(clock >= 0);
    assert_eq!(cars.len(), 20, "every car of the sample");
    // Any other key is still unknown: closed with 4004.
    let other = Client::connect(port, "1234").await;
    support::wait_until("an unknown session is closed", || other.closed()).await;
    assert_eq!(*other.close_code.lock().unwrap(), Some(4004));
    running.stop().await;
}
