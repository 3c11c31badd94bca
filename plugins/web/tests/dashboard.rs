//! Black-box tests of the `dashboard` sink: a real server on loopback, real WebSocket
//! clients speaking the original race dashboard's protocol (FORMATS.md section 7).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next_message, next_text, start, Client};
use futures_util::SinkExt;
use pitwall_api::record::{LaneState, RaceEvent, RaceState};
use pitwall_api::{Event, Record};
use pitwall_web::dashboard::DashboardConfig;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

fn event(message: Value) -> Event {
    Event::new(0, Record::RaceEvent(Arc::new(RaceEvent { message })))
}

fn state(status: &str, lanes: &[&[f64]]) -> Event {
    Event::new(
        0,
        Record::RaceState(Arc::new(RaceState {
            status: status.into(),
            lanes: lanes
                .iter()
                .enumerate()
                .map(|(i, laps)| LaneState {
                    lane: i as u32 + 1,
                    laps: laps.to_vec(),
                    lap_started_ns: None,
                })
                .collect(),
        })),
    )
}

async fn next_json(client: &mut Client) -> Value {
    serde_json::from_str(&next_text(client, WAIT).await).expect("a JSON text frame")
}

async fn next_command(running: &common::Running) -> String {
    let batch = tokio::time::timeout(WAIT, running.output.pop())
        .await
        .expect("a command arrives")
        .expect("output open");
    assert_eq!(batch.len(), 1);
    match &batch[0].record {
        Record::Command(command) => command.name.clone(),
        other => panic!("expected a command, got {other:?}"),
    }
}

#[tokio::test]
async fn serves_the_page() {
    let running = start::<DashboardConfig>("", "/").await;
    let response = running.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = response.text().await.unwrap();
    for needle in [
        ">START<",
        ">STOP<",
        ">NEW RACE<",
        "/ws",
        "full_state",
        "lap_finish",
    ] {
        assert!(body.contains(needle), "page lacks {needle}");
    }
    running.finish().await.unwrap();
}

#[tokio::test]
async fn full_state_on_connect_then_every_race_event_to_every_client() {
    let running = start::<DashboardConfig>("", "/").await;
    let mut first = running.connect_path("/ws").await;
    // Before any race state: idle, two empty tracks, as the original starts.
    assert_eq!(
        next_json(&mut first).await,
        json!({
            "type": "full_state", "status": "idle",
            "track_1_laps": [], "track_2_laps": [],
            "track_1_last_lap": 0, "track_2_last_lap": 0
        })
    );
    let lap = json!({"type": "lap_finish", "track": 1, "lap_time_sec": 5.2});
    running
        .push(vec![event(lap.clone()), state("running", &[&[5.2], &[]])])
        .await;
    assert_eq!(next_json(&mut first).await, lap);

    // A client connecting now gets the lap in its full_state.
    let mut second = running.connect_path("/ws").await;
    let mut third = running.connect_path("/ws").await;
    for client in [&mut second, &mut third] {
        assert_eq!(
            next_json(client).await,
            json!({
                "type": "full_state", "status": "running",
                "track_1_laps": [5.2], "track_2_laps": [],
                "track_1_last_lap": 5.2, "track_2_last_lap": 0
            })
        );
    }
    // The lights status is shown as the original shows it: running.
    let messages: Vec<Value> = (1..=5)
        .map(|n| json!({"type": "light", "light_id": n, "state": "on"}))
        .collect();
    let mut batch: Vec<Event> = messages.iter().cloned().map(event).collect();
    batch.push(state("lights", &[&[], &[]]));
    running.push(batch).await;
    for client in [&mut first, &mut second, &mut third] {
        for expected in &messages {
            assert_eq!(&next_json(client).await, expected);
        }
    }
    let mut fourth = running.connect_path("/ws").await;
    assert_eq!(next_json(&mut fourth).await["status"], "running");

    // The input ends: every client gets a close frame.
    running.finish().await.unwrap();
    for client in [&mut first, &mut second, &mut third, &mut fourth] {
        assert!(matches!(
            next_message(client, WAIT).await,
            Message::Close(_)
        ));
    }
}

#[tokio::test]
async fn browser_buttons_become_commands() {
    let running = start::<DashboardConfig>("", "/").await;
    let mut client = running.connect_path("/ws").await;
    next_json(&mut client).await;
    client.send(Message::text("start")).await.unwrap();
    assert_eq!(next_command(&running).await, "start");
    // Not a command: ignored.
    client
        .send(Message::text("launch the rockets"))
        .await
        .unwrap();
    client.send(Message::text("stop")).await.unwrap();
    assert_eq!(next_command(&running).await, "stop");
    client.send(Message::text("reset")).await.unwrap();
    assert_eq!(next_command(&running).await, "reset");
    assert!(running.output.is_empty());
    running.finish().await.unwrap();
}

#[tokio::test]
async fn a_stalled_client_is_dropped_and_does_not_hold_up_the_others() {
    let running = start::<DashboardConfig>("", "/").await;
    // Connected, but never reads again.
    let mut stalled = running.connect_path("/ws").await;
    next_json(&mut stalled).await;
    let mut reader = running.connect_path("/ws").await;
    next_json(&mut reader).await;
    let filler = "x".repeat(16 * 1024);
    let total: u64 = 2000;
    let chunk = 100;
    // The reader keeps up with a realistic pace (each burst well under the client queue),
    // reporting how far it got; the stalled client falls behind and is dropped.
    let (progress, mut seen) = tokio::sync::watch::channel(0u64);
    let reading = tokio::spawn(async move {
        for i in 0..total {
            let message = next_json(&mut reader).await;
            assert_eq!(message["n"], i, "in order, none lost");
            progress.send_replace(i + 1);
        }
        reader
    });
    for start in (0..total).step_by(chunk) {
        let batch = (start..start + chunk as u64)
            .map(|n| event(json!({"type": "status", "message": filler, "n": n})))
            .collect();
        running.push(batch).await;
        let target = start + chunk as u64;
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|&n| n >= target))
            .await
            .expect("the reading client keeps up")
            .expect("the reader is alive");
    }
    let _reader = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the reading client gets everything in time")
        .unwrap();
    assert!(
        running.metrics.snapshot().errors >= 1,
        "the stalled client was dropped"
    );
    running.finish().await.unwrap();
}

/// Opens the dashboard's socket as a browser page from `origin` would.
async fn connect_from(
    running: &common::Running,
    origin: &str,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws", running.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(client, _)| client)
}

/// Any web page a phone visits could otherwise press START on a dashboard on 0.0.0.0.
#[tokio::test]
async fn only_its_own_page_or_an_allowed_origin_may_open_the_command_socket() {
    let running = start::<DashboardConfig>("", "/").await;
    let own = format!("http://{}", running.address);
    assert!(connect_from(&running, &own).await.is_ok(), "its own page");
    match connect_from(&running, "https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("another site's page was let in: {:?}", other.map(|_| ())),
    }
    // Not a browser (no Origin): allowed, as the original's own clients.
    assert!(running.connect_path("/ws").await.close(None).await.is_ok());
    running.finish().await.unwrap();

    let allowing =
        start::<DashboardConfig>("allowed_origins = [\"http://pit.local:8000\"]", "/").await;
    assert!(connect_from(&allowing, "http://pit.local:8000")
        .await
        .is_ok());
    assert!(connect_from(&allowing, "https://evil.example")
        .await
        .is_err());
    allowing.finish().await.unwrap();
}
