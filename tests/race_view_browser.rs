//! The race view in a real browser: headless Chromium (Debian's `chromium`) opens the page
//! the real binary serves and the test checks what a person sees. The main job's sample
//! race: every driver in the tower in race order, the cars drawn where the Cardputer's
//! frames say, cars moving between two screenshots, a page reloaded or a socket dropped
//! coming back to the same race, a phone and a desktop both laid out without overlap, and
//! the script time per animation frame. `rf2-race-view.toml` with the real `rfactor2`
//! source on buffers written as the plugin writes them: every car in the game's order, on
//! the path they drive. Emperor records (replayed from NDJSON through the shipped
//! `emperor-live-timing.toml`'s `race_view` sink): the server's order and chat on screen. Screenshots are saved under `target/tmp/race-view/`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pitwall_api::record::{Chat, Connection, SessionKey, Standing};
use pitwall_api::{Event, Record};
use serde_json::Value;
use support::browser::Browser;
use support::{free_port, get_json, main_job, Running, Workspace};
use tokio_tungstenite::tungstenite::Message;

type WsClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("race-view");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn save_screenshot(browser: &mut Browser, name: &str) -> Vec<u8> {
    let png = browser.screenshot().await;
    std::fs::write(screenshot_dir().join(name), &png).unwrap();
    png
}

async fn wait_for_page(port: u16, running: &Running) {
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/race/state")).await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            started.elapsed() < support::PATIENCE,
            "the race view never answered: {}",
            running.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tower as drawn: each row's code and position, top to bottom.
async fn tower(browser: &mut Browser) -> Vec<(String, u64)> {
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#tower tbody tr')].map(r => \
             [r.querySelector('td.code').textContent, Number(r.dataset.position)])",
        )
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The newest frame the Cardputer stream has sent: `(car, x, y)` in world units.
async fn newest_frame(socket: &mut WsClient) -> Vec<(u32, f64, f64)> {
    let mut newest = None;
    // Take what is queued, then what comes in the next 200 ms: the last is current now.
    let until = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await {
        if let Message::Text(text) = message {
            newest = Some(text.to_string());
        }
    }
    let text = newest.expect("frames keep coming");
    text.split('|')
        .skip(1)
        .filter(|chunk| chunk.matches(',').count() == 3)
        .map(|chunk| {
            let p: Vec<&str> = chunk.split(',').collect();
            (
                p[0].parse().unwrap(),
                p[1].parse().unwrap(),
                p[2].parse().unwrap(),
            )
        })
        .collect()
}

/// The page's boxes that must not overlap, as `[name, left, top, right, bottom]`.
async fn overlaps(browser: &mut Browser) -> Vec<String> {
    let boxes = browser
        .eval(
            "['header', '#map-box', '#tower-box', '#feed-box'].map(s => { \
             const r = document.querySelector(s).getBoundingClientRect(); \
             return [s, r.left, r.top, r.right, r.bottom]; })",
        )
        .await;
    let boxes: Vec<(String, [f64; 4])> = boxes
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b[0].as_str().unwrap().to_string(),
                [1, 2, 3, 4].map(|i| b[i].as_f64().unwrap()),
            )
        })
        .collect();
    let mut found = Vec::new();
    for (i, (a, ra)) in boxes.iter().enumerate() {
        assert!(
            ra[2] - ra[0] > 100.0 && ra[3] - ra[1] > 30.0,
            "{a} is visible: {ra:?}"
        );
        for (b, rb) in &boxes[i + 1..] {
            let x = ra[2].min(rb[2]) - ra[0].max(rb[0]);
            let y = ra[3].min(rb[3]) - ra[1].max(rb[1]);
            if x > 0.5 && y > 0.5 {
                found.push(format!("{a} {ra:?} overlaps {b} {rb:?}"));
            }
        }
    }
    found
}

/// Pixels of colour `rgb` (within a small tolerance) in a PNG.
fn pixels_of(png_bytes: &[u8], rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    let channels = info.color_type.samples();
    pixels[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 12))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_in_a_desktop_browser() {
    let (port, admin) = (free_port(), free_port());
    let workspace = Workspace::new();
    workspace.write_pipeline(&main_job(port, admin, "2"));
    let running = Running::start(&workspace).await;
    wait_for_page(port, &running).await;
    let drivers = get_json(&format!("http://127.0.0.1:{port}/session/9999/drivers")).await;
    let drivers = drivers.as_array().expect("an array of drivers");
    assert_eq!(drivers.len(), 20);

    let mut browser = Browser::open_sized(&format!("http://127.0.0.1:{port}/"), 1280, 800).await;
    browser
        .wait_for(
            "the page shows the replay with every car",
            "document.getElementById('conn').classList.contains('replay') \
             && raceView.drawn.length === 20",
        )
        .await;

    // The replay starts 20 s before lights out: wait for the cars to drive.
    browser
        .wait_for(
            "the race is under way",
            "raceView.race.session.t_ms > 23000",
        )
        .await;

    // The tower: every driver of the input, in race order.
    browser
        .wait_for(
            "the tower has every driver",
            "document.querySelectorAll('#tower tbody tr').length === 20",
        )
        .await;
    let rows = tower(&mut browser).await;
    let positions: Vec<u64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(positions, (1..=20).collect::<Vec<u64>>(), "{rows:?}");
    let mut codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let mut expected: Vec<&str> = drivers
        .iter()
        .map(|d| d["name_acronym"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    expected.sort_unstable();
    assert_eq!(codes, expected);

    // The cars are drawn where the frames put them: the Cardputer's stream of the same
    // frames, projected by the page's own map transform.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/9999"))
            .await
            .unwrap();
    let frame = newest_frame(&mut socket).await;
    let drawn = browser
        .eval(&format!(
            "(() => {{ const frame = {}; return frame.map(([car, x, y]) => {{ \
             const want = raceView.project(x, y); \
             const got = raceView.drawn.find(d => d.id === String(car)); \
             return got && want ? Math.hypot(got.x - want.x, got.y - want.y) : 1e9; }}); }})()",
            serde_json::to_string(&frame).unwrap()
        ))
        .await;
    let distances: Vec<f64> = drawn
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    // The page draws each car gliding toward its newest position over one update (100 ms
    // of wall time, 200 ms of the race at speed 2), so a car is at most that far behind.
    let close = distances.iter().filter(|d| **d < 25.0).count();
    assert!(
        close >= 18,
        "cars drawn within 25 px of their frame position: {close} of 20 ({distances:?})"
    );
    let inside = browser
        .eval(
            "(() => { const c = document.getElementById('map').getBoundingClientRect(); \
             return raceView.drawn.every(d => d.x >= 0 && d.y >= 0 && d.x <= c.width && d.y <= c.height); })()",
        )
        .await;
    assert_eq!(inside, Value::Bool(true), "every car is inside the map");

    // The cars move between two screenshots, drawn in their team colours.
    let before = browser
        .eval("raceView.drawn.map(d => [d.id, d.x, d.y])")
        .await;
    let first = save_screenshot(&mut browser, "desktop-1.png").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = browser
        .eval("raceView.drawn.map(d => [d.id, d.x, d.y])")
        .await;
    let second = save_screenshot(&mut browser, "desktop-2.png").await;
    assert_ne!(first, second, "the picture changed");
    let moved = before
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            after
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a[0] == b[0] && (a[1] != b[1] || a[2] != b[2]))
        })
        .count();
    assert!(moved >= 15, "{moved} of 20 cars moved in 1.5 s");
    let colour = drivers[0]["team_colour"].as_str().unwrap();
    let rgb = [0, 2, 4].map(|i| u8::from_str_radix(&colour[i..i + 2], 16).unwrap());
    assert!(
        pixels_of(&second, rgb) > 20,
        "{} is drawn in its team colour #{colour}",
        drivers[0]["name_acronym"]
    );

    // Race control on screen.
    browser
        .wait_for(
            "a race-control message is shown",
            "document.querySelectorAll('#feed li').length > 0",
        )
        .await;

    // Under 5 ms of script per animation frame with 20 cars, measured over 3 s of the
    // race with nothing else asked of the page.
    browser.eval("raceView.resetFrameStats(); true").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = browser.eval("raceView.frameStats()").await;
    // The typical frame is the page's own cost. The slowest frames measure this two-core
    // machine running Chromium's other processes, the replay and the other tests beside
    // the page (the clock includes being descheduled), so they are printed, not asserted:
    // the README's benchmark table has the figure from a quiet run.
    assert!(stats["frames"].as_u64().unwrap() > 30, "{stats}");
    assert!(
        stats["p50_ms"].as_f64().unwrap() < 5.0,
        "frame script time {stats}"
    );
    eprintln!("race view frame script time, 20 cars: {stats}");

    assert_eq!(overlaps(&mut browser).await, Vec::<String>::new());

    // A dropped socket, then a reloaded page: both come back to the same race.
    browser.eval("raceView.dropSocket(); true").await;
    browser
        .wait_for(
            "the page reconnects by itself",
            "document.getElementById('conn').classList.contains('replay') \
             && raceView.drawn.length === 20",
        )
        .await;
    browser.eval("location.reload(); true").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser
        .wait_for(
            "the reloaded page shows the race",
            "document.getElementById('conn').classList.contains('replay') \
             && document.querySelectorAll('#tower tbody tr').length === 20 \
             && raceView.drawn.length === 20",
        )
        .await;
    let reloaded = tower(&mut browser).await;
    let state = get_json(&format!("http://127.0.0.1:{port}/race/state")).await;
    let server_laps = state["session"]["lap"].as_u64().unwrap();
    let page_lap = browser
        .eval("document.getElementById('lap').textContent")
        .await;
    assert!(
        page_lap.as_str().unwrap().starts_with("Lap "),
        "lap shown: {page_lap}"
    );
    assert!(server_laps >= 1);
    assert_eq!(reloaded.len(), 20);
    save_screenshot(&mut browser, "desktop-reloaded.png").await;
    browser.close().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_on_a_phone_held_upright() {
    let (port, admin) = (free_port(), free_port());
    let workspace = Workspace::new();
    workspace.write_pipeline(&main_job(port, admin, "2"));
    let running = Running::start(&workspace).await;
    wait_for_page(port, &running).await;
    let mut browser = Browser::open_sized(&format!("http://127.0.0.1:{port}/"), 390, 844).await;
    browser
        .wait_for(
            "the phone shows every car and the tower",
            "raceView.drawn.length === 20 \
             && document.querySelectorAll('#tower tbody tr').length === 20",
        )
        .await;
    assert_eq!(overlaps(&mut browser).await, Vec::<String>::new());
    // The map fills the width of the phone, above the tower.
    let layout = browser
        .eval(
            "(() => { const m = document.getElementById('map-box').getBoundingClientRect(), \
             t = document.getElementById('tower-box').getBoundingClientRect(); \
             return [m.width, m.height, t.top >= m.bottom, innerWidth]; })()",
        )
        .await;
    assert!(
        layout[0].as_f64().unwrap() > layout[3].as_f64().unwrap() * 0.9,
        "{layout}"
    );
    assert!(layout[1].as_f64().unwrap() >= 250.0, "{layout}");
    assert_eq!(
        layout[2],
        Value::Bool(true),
        "tower below the map: {layout}"
    );
    save_screenshot(&mut browser, "phone.png").await;
    browser.close().await;
    running.stop().await;
}

fn standing(session: &SessionKey, car: u32, position: u32, name: &str) -> Record {
    Record::Standing(Arc::new(Standing {
        session_key: session.clone(),
        car,
        position,
        driver_name: Some(name.to_string()),
        laps: 3,
        ..Standing::default()
    }))
}

/// Replay `events` through the `race_view` sink of the shipped pipeline `shipped`, with its
/// source swapped for a `file` source, and open the page.
async fn replay_through_shipped_view(
    shipped: &str,
    events: &[Event],
) -> (Running, Browser, Workspace, u16) {
    let port = free_port();
    let workspace = Workspace::new();
    let mut text = String::new();
    for event in events {
        text.push_str(&serde_json::to_string(event).unwrap());
        text.push('\n');
    }
    std::fs::write(workspace.path("records.ndjson"), text).unwrap();
    let pipeline = std::fs::read_to_string(shipped).unwrap();
    let view = &pipeline[pipeline.find("[sinks.view]").expect("a race_view sink")..];
    let view = view[..view[1..].find("\n[").map_or(view.len(), |end| end + 1)].to_string();
    let input = view
        .lines()
        .find(|line| line.starts_with("inputs"))
        .unwrap()
        .to_string();
    let view = view
        .replace(&input, "inputs = [\"replay\"]")
        .replace("${HUB_LISTEN:-127.0.0.1:8000}", "127.0.0.1:8000")
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
    workspace.write_pipeline(&format!(
        "[sources.replay]\ntype = \"file\"\npath = \"records.ndjson\"\nspeed = 1\n\n{view}"
    ));
    let running = Running::start(&workspace).await;
    wait_for_page(port, &running).await;
    let browser = Browser::open_sized(&format!("http://127.0.0.1:{port}/"), 1280, 800).await;
    (running, browser, workspace, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emperor_race_in_the_browser() {
    let session: SessionKey = "york-fs-gt3".into();
    let start = 1_716_728_400_000_000_000i64;
    let mut events = vec![Event::new(
        start,
        Record::Connection(Arc::new(Connection {
            session_key: session.clone(),
            car: 9,
            connected: true,
            driver_name: Some("Ann Other".into()),
            ..Connection::default()
        })),
    )];
    let order = [(4, "Max Power"), (9, "Ann Other"), (2, "Jane Doe")];
    for step in 0..100i64 {
        let t = start + step * 100_000_000;
        for (position, (car, name)) in order.iter().enumerate() {
            events.push(Event::new(
                t,
                standing(&session, *car, position as u32 + 1, name),
            ));
            let angle = (step as f64) * 0.05 + position as f64 * 0.3;
            events.push(Event::new(
                t,
                Record::Position(pitwall_api::record::CarPosition {
                    session_key: session.clone(),
                    car: *car,
                    x: 300.0 * angle.cos(),
                    y: 200.0 * angle.sin(),
                    ..Default::default()
                }),
            ));
        }
        if step == 20 {
            events.push(Event::new(
                t,
                Record::Chat(Arc::new(Chat {
                    session_key: session.clone(),
                    car: Some(9),
                    driver_name: Some("Ann Other".into()),
                    message: "good luck all".into(),
                })),
            ));
        }
    }
    let (running, mut browser, _workspace, _) =
        replay_through_shipped_view("pipelines/emperor-live-timing.toml", &events).await;
    browser
        .wait_for(
            "the chat shows as race control",
            "document.getElementById('feed').textContent.includes('Ann Other: good luck all')",
        )
        .await;
    let rows = tower(&mut browser).await;
    let codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(codes, ["POW", "OTH", "DOE"], "the server's order: {rows:?}");
    browser
        .wait_for("three cars on the map", "raceView.drawn.length === 3")
        .await;
    save_screenshot(&mut browser, "emperor.png").await;
    browser.close().await;
    running.stop().await;
}

/// The rF2 Shared Memory Map Plugin's buffers, built byte by byte by the rfactor2 tests' own
/// writer (one test kit for both).
#[path = "../plugins/rfactor2/tests/common/mod.rs"]
mod rf2_buffers;

/// Write a buffer as a bridge replacing a file would: the reader never sees half of it.
fn write_buffer(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// `pipelines/rf2-race-view.toml` as shipped, with the real `rfactor2` source reading
/// buffers this test writes as the plugin does: three cars driving round an oval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rfactor2_session_in_the_browser() {
    use rf2_buffers::{scoring, telemetry, Car, Info, Scored};
    let port = free_port();
    let workspace = Workspace::new();
    let buffers = workspace.path("shm");
    std::fs::create_dir_all(&buffers).unwrap();
    let pipeline = std::fs::read_to_string("pipelines/rf2-race-view.toml")
        .unwrap()
        .replace(
            "type = \"rfactor2\"",
            &format!(
                "type = \"rfactor2\"\ndir = {:?}",
                buffers.display().to_string()
            ),
        )
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
    assert!(pipeline.contains("cars = \"all\""));
    workspace.write_pipeline(&pipeline);
    let drivers: [&'static [u8]; 3] = [b"Ann Alpha", b"Ben Bravo", b"Cat Charlie"];
    let scored: Vec<Scored> = (0..3)
        .map(|i| Scored::new(i + 1, drivers[i as usize], i as u8 + 1))
        .collect();
    write_buffer(
        &buffers,
        "$rFactor2SMMP_Scoring$",
        &scoring(2, &Info::default(), &scored),
    );
    let writer = {
        let buffers = buffers.clone();
        tokio::spawn(async move {
            for step in 0..2000u32 {
                let cars: Vec<Car> = (0..3)
                    .map(|i| {
                        let angle = step as f64 * 0.02 - f64::from(i) * 0.4;
                        let mut car = Car::new(i + 1);
                        car.pos = [400.0 * angle.cos(), 1.0, 250.0 * angle.sin()];
                        car
                    })
                    .collect();
                write_buffer(
                    &buffers,
                    "$rFactor2SMMP_Telemetry$",
                    &telemetry(2 * step + 2, &cars),
                );
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let running = Running::start(&workspace).await;
    wait_for_page(port, &running).await;
    let mut browser = Browser::open_sized(&format!("http://127.0.0.1:{port}/"), 1280, 800).await;
    browser
        .wait_for(
            "every car on the map and in the tower",
            "raceView.drawn.length === 3 \
             && document.querySelectorAll('#tower tbody tr').length === 3",
        )
        .await;
    let rows = tower(&mut browser).await;
    let codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(codes, ["ALP", "BRA", "CHA"], "{rows:?}");
    let positions: Vec<u64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(positions, [1, 2, 3], "by the game's place: {rows:?}");
    let names = browser
        .eval("raceView.race.tower.rows.map(r => r.name)")
        .await;
    assert_eq!(
        names,
        serde_json::json!(["Ann Alpha", "Ben Bravo", "Cat Charlie"])
    );
    // The map's outline is the path the cars drive, built up as they go, and they move.
    browser
        .wait_for(
            "the driven path is drawn",
            "raceView.race.track.driven && raceView.race.track.outline.length > 20",
        )
        .await;
    let before = browser.eval("raceView.drawn.map(d => [d.x, d.y])").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = browser.eval("raceView.drawn.map(d => [d.x, d.y])").await;
    assert_ne!(before, after, "the cars move");
    save_screenshot(&mut browser, "rfactor2.png").await;
    writer.abort();
    browser.close().await;
    running.stop().await;
}
