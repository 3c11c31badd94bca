//! Black-box tests of the `rest` sink on a real loopback server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::start;
use pitwall_api::record::*;
use pitwall_api::testing::parse_config;
use pitwall_api::{ComponentConfig, Event, Record, RecordKind};
use pitwall_web::rest::{Keep, RestConfig};
use serde_json::{json, Value};

const ROUTES: &str = r#"
[routes]
"/api/drivers" = { kind = "driver", keep = "per_key" }
"/api/weather" = { kind = "weather" }
"/api/race_control" = { kind = "race_control", keep = "all", max_items = 3 }
"/api/last_driver" = { kind = "driver" }
"#;

fn driver(session: &str, number: u32, acronym: &str) -> Event {
    Event::new(
        0,
        Record::Driver(Arc::new(Driver {
            session_key: session.into(),
            driver_number: number,
            name_acronym: Some(acronym.into()),
            ..Default::default()
        })),
    )
}

fn weather(air: f64) -> Event {
    Event::new(
        0,
        Record::Weather(Arc::new(Weather {
            session_key: "1".into(),
            air_temperature: Some(air),
            ..Default::default()
        })),
    )
}

fn message(text: &str) -> Event {
    Event::new(
        0,
        Record::RaceControl(Arc::new(RaceControlMessage {
            session_key: "1".into(),
            message: Some(text.into()),
            ..Default::default()
        })),
    )
}

async fn get_json(running: &common::Running, path: &str) -> (u16, Option<Value>) {
    let response = running.get(path).await;
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["content-type"], "application/json");
        (status, Some(response.json().await.unwrap()))
    } else {
        (status, None)
    }
}

/// Poll `path` until its JSON equals `expected`.
async fn eventually(running: &common::Running, path: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, body) = get_json(running, path).await;
        if body.as_ref() == Some(&expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: got {body:?}, want {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn routes_serve_latest_per_key_and_all() {
    let running = start::<RestConfig>(ROUTES, "/api/drivers").await;

    // Before anything arrived: collections are empty, a single value is 404.
    assert_eq!(
        get_json(&running, "/api/drivers").await,
        (200, Some(json!([])))
    );
    assert_eq!(
        get_json(&running, "/api/race_control").await,
        (200, Some(json!([])))
    );
    assert_eq!(get_json(&running, "/api/weather").await, (404, None));

    running
        .push(vec![
            driver("1", 44, "HAM"),
            driver("1", 1, "VER"),
            driver("1", 44, "LEW"),
            driver("2", 44, "HAM"),
            weather(20.5),
            message("GREEN LIGHT"),
            message("YELLOW IN SECTOR 2"),
        ])
        .await;
    running
        .push(vec![
            weather(21.0),
            message("CLEAR"),
            message("DRS ENABLED"),
        ])
        .await;

    // Served as the record's own fields, without the kind tag.
    eventually(
        &running,
        "/api/weather",
        json!({"session_key": "1", "date": null, "air_temperature": 21.0,
               "track_temperature": null, "humidity": null, "pressure": null,
               "rainfall": null, "wind_direction": null, "wind_speed": null}),
    )
    .await;
    let (_, drivers) = get_json(&running, "/api/drivers").await;
    let drivers: Vec<(String, u64, String)> = drivers
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d.get("kind").is_none());
            (
                d["session_key"].as_str().unwrap().to_string(),
                d["driver_number"].as_u64().unwrap(),
                d["name_acronym"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        drivers,
        vec![
            ("1".to_string(), 1, "VER".to_string()),
            ("1".to_string(), 44, "LEW".to_string()),
            ("2".to_string(), 44, "HAM".to_string()),
        ],
        "newest per (session, driver), sorted by key"
    );
    let (_, messages) = get_json(&running, "/api/race_control").await;
    let messages: Vec<&str> = messages
        .as_ref()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["YELLOW IN SECTOR 2", "CLEAR", "DRS ENABLED"],
        "newest max_items, oldest first"
    );
    let (_, last) = get_json(&running, "/api/last_driver").await;
    assert_eq!(last.unwrap()["session_key"], "2");

    // Nothing else is served.
    for path in ["/api", "/api/drivers/1", "/api/../Cargo.toml", "/"] {
        assert_eq!(running.get(path).await.status(), 404, "{path}");
    }
    running.finish().await.unwrap();
}

#[test]
fn options_are_checked() {
    let config: RestConfig = parse_config(ROUTES);
    assert_eq!(config.address, "127.0.0.1:8000");
    assert_eq!(config.routes["/api/weather"].keep, Keep::Latest);
    assert_eq!(config.routes["/api/race_control"].max_items, 3);
    assert!(config.check().is_empty());
    let accepts = config.accepts();
    assert!(accepts.contains(RecordKind::Driver));
    assert!(accepts.contains(RecordKind::Weather));
    assert!(accepts.contains(RecordKind::RaceControl));
    assert!(!accepts.contains(RecordKind::Frame));
    let listeners = config.listeners();
    assert_eq!(
        listeners[0].routes,
        [
            "/api/drivers",
            "/api/last_driver",
            "/api/race_control",
            "/api/weather"
        ]
    );

    let bad: RestConfig = parse_config(
        r#"
[routes]
"/api/x" = { kind = "drivers" }
"/api/{id}" = { kind = "lap", keep = "all", max_items = 0 }
"#,
    );
    let problems = bad.check();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            r#"routes."/api/x".kind"#,
            r#"routes."/api/{id}""#,
            r#"routes."/api/{id}".max_items"#
        ]
    );
    assert!(problems[0].message.contains("`drivers`"));
    assert!(
        problems[0].message.contains("driver, position"),
        "{}",
        problems[0].message
    );
    assert!(bad
        .build(&pitwall_api::testing::build_context("r", "."))
        .is_err());

    let empty: RestConfig = parse_config("");
    assert_eq!(empty.check()[0].key, "routes");
}

#[tokio::test]
async fn a_token_is_required_when_configured_and_never_shown() {
    let options = format!("token = \"s3cret\"\n{ROUTES}");
    let config: RestConfig = parse_config(&format!("address = \"127.0.0.1:0\"\n{options}"));
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "the token must not appear in debug output"
    );
    let running = start::<RestConfig>(&options, "/api/drivers").await;
    assert_eq!(running.get("/api/drivers").await.status().as_u16(), 401);
    let client = reqwest::Client::new();
    let with_header = client
        .get(running.url("/api/drivers"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status().as_u16(), 200);
    let wrong = client
        .get(running.url("/api/drivers"))
        .bearer_auth("s3cre")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let with_query = running.get("/api/drivers?access_token=s3cret").await;
    assert_eq!(with_query.status().as_u16(), 200);
    running.finish().await.unwrap();
}

#[tokio::test]
async fn only_configured_routes_are_served() {
    let running = start::<RestConfig>(ROUTES, "/api/drivers").await;
    for path in [
        "/api/../Cargo.toml",
        "/api/drivers/../../Cargo.toml",
        "/api/%2e%2e/%2e%2e/Cargo.toml",
        "/api/drivers/extra",
        "/",
    ] {
        let status = running.get(path).await.status().as_u16();
        assert_eq!(status, 404, "{path} must not be served");
    }
    running.finish().await.unwrap();
}
