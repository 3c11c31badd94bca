//! The slot-car race-control dashboard in a real browser: headless Chromium (Debian's
//! `chromium`) loads the page from the real binary, presses START, sees the five lights and
//! lights out, sees laps appear after light-gate messages published to a real Mosquitto
//! broker (Debian's `mosquitto`), presses STOP and sees the summary, in the DOM and in a
//! screenshot. `.ci/run` installs both packages.

mod support;

use std::time::Duration;

use support::browser::Browser;
use support::mqtt::{publish, Mosquitto};
use support::{free_port, Running, Workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_in_a_real_browser() {
    let (broker_port, web_port) = (free_port(), free_port());
    let _broker = Mosquitto::start(broker_port).await;
    let workspace = Workspace::new();
    workspace.write_pipeline(&format!(
        r#"
[sources.gates]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker_port}"
topics = ["carrera/track{{lane}}/finish"]
emit = "gate_trigger"

[transforms.race]
type = "race_control"
inputs = ["gates", {{ from = "dashboard", when_full = "drop_oldest" }}]
light_interval_ms = 300
hold_min_ms = 200
hold_max_ms = 400
min_lap_ms = 300

[sinks.dashboard]
type = "dashboard"
inputs = ["race"]
address = "127.0.0.1:{web_port}"
"#
    ));
    let running = Running::start(&workspace).await;
    let started = std::time::Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{web_port}/"))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < support::PATIENCE,
            "{}",
            running.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut browser = Browser::open(&format!("http://127.0.0.1:{web_port}/")).await;
    browser
        .wait_for(
            "the page is connected",
            "document.getElementById('conn').classList.contains('ok')",
        )
        .await;

    // START: five lights, then lights out.
    browser
        .eval("document.getElementById('start').click(); true")
        .await;
    let mut most_lights = 0;
    let lights_out = std::time::Instant::now();
    loop {
        let on = browser
            .eval("document.querySelectorAll('#lights .light.on').length")
            .await
            .as_u64()
            .unwrap();
        most_lights = most_lights.max(on);
        if most_lights == 5 && on == 0 {
            break;
        }
        assert!(
            lights_out.elapsed() < support::PATIENCE,
            "lights never went out ({most_lights} seen)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most_lights, 5, "all five lights were seen on");

    // Laps appear as cars cross their gates.
    for (lane, laps) in [(1, 2), (2, 1)] {
        for _ in 0..laps {
            tokio::time::sleep(Duration::from_millis(400)).await;
            publish(broker_port, &format!("carrera/track{lane}/finish"), "").await;
        }
    }
    browser
        .wait_for(
            "laps appear",
            "document.querySelector('#lane-1 .count')?.textContent === '2' && \
             document.querySelector('#lane-2 .count')?.textContent === '1'",
        )
        .await;

    // A phone that (re)connects mid-race, a second after lane 2's last crossing: its lap
    // timers run at once and agree with the page that saw the crossing (one that timed the
    // lap from when it connected would be a second behind).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut late = Browser::open(&format!("http://127.0.0.1:{web_port}/")).await;
    let current = "parseFloat(document.querySelector('#lane-2 .current').textContent) || 0";
    late.wait_for("the late page's timers run", &format!("({current}) > 0"))
        .await;
    let (seen, joined) = (
        browser.eval(current).await.as_f64().unwrap(),
        late.eval(current).await.as_f64().unwrap(),
    );
    assert!(seen > 1.0, "lane 2's lap has run {seen} s");
    assert!(
        (seen - joined).abs() < 0.3,
        "the late page times the lap from its start: {joined} s against {seen} s"
    );
    late.close().await;

    // STOP: the summary shows each lane's laps with the fastest lap highlighted.
    browser
        .eval("document.getElementById('stop').click(); true")
        .await;
    browser
        .wait_for(
            "the summary is shown",
            "getComputedStyle(document.getElementById('summary')).display !== 'none'",
        )
        .await;
    let rows = browser
        .eval("[...document.querySelectorAll('#summary-body tr')].map(r => r.children[1].textContent)")
        .await;
    assert_eq!(
        rows,
        serde_json::json!(["2", "1"]),
        "laps per lane in the summary"
    );
    let fastest = browser
        .eval("document.querySelectorAll('#summary-body tr.fastest').length")
        .await;
    assert_eq!(fastest, 1, "exactly one fastest lap is highlighted");
    let rect = browser
        .eval(
            "(() => { const s = document.getElementById('summary'); s.scrollIntoView(); \
             const r = s.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()",
        )
        .await;
    let png = browser.screenshot().await;
    let bounds: Vec<f64> = rect
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let gold = gold_pixels_in(&png, &bounds);
    assert!(
        gold > 30,
        "the summary's highlighted fastest lap is visible ({gold} gold pixels)"
    );
    browser.close().await;
    running.stop().await;
}

/// Pixels close to the page's highlight colour (#f5c518) inside `[left, top, right, bottom]`.
fn gold_pixels_in(png_bytes: &[u8], bounds: &[f64]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let clamp = |v: f64, max: usize| (v.max(0.0) as usize).min(max);
    let (left, top) = (clamp(bounds[0], width), clamp(bounds[1], height));
    let (right, bottom) = (clamp(bounds[2], width), clamp(bounds[3], height));
    let mut count = 0;
    for y in top..bottom {
        for x in left..right {
            let at = (y * width + x) * channels;
            let (r, g, b) = (
                pixels[at] as i32,
                pixels[at + 1] as i32,
                pixels[at + 2] as i32,
            );
            if (r - 0xf5).abs() < 40 && (g - 0xc5).abs() < 40 && (b - 0x18).abs() < 60 {
                count += 1;
            }
        }
    }
    count
}
