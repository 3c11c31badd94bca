//! Quick throughput check of the `resample` transform (no criterion): a synthetic race of
//! 20 cars x 30,000 samples (~600k positions, ~2.25 h at 3.7 Hz) through the component as
//! a replay at speed 0 would deliver it, in batches of 1024.
//!
//!     cargo run --release -p pitwall-motion --example resample_throughput

use std::sync::Arc;
use std::time::Instant;

use pitwall_api::record::{CarPosition, RaceMetadata, RacePosition, SessionEnd};
use pitwall_api::testing::{build_context, drain, wire};
use pitwall_api::{ComponentConfig, Event, Record, WhenFull};
use pitwall_motion::resample::ResampleConfig;

const CARS: u32 = 20;
const SAMPLES: i64 = 30_000;

fn race() -> Vec<Event> {
    let start = 1_716_728_400_000_000_000i64;
    let key: Arc<str> = "9158".into();
    let mut events = Vec::with_capacity((CARS as usize) * SAMPLES as usize + 64);
    events.push(Event::new(
        start,
        Record::RaceMetadata(Arc::new(RaceMetadata {
            session_key: key.clone(),
            reference_start_time: "2024-05-26T13:00:00+00:00".into(),
            reference_start_ns: start,
            ..Default::default()
        })),
    ));
    for i in 0..SAMPLES {
        let t = start + i * 270_000_000;
        for car in 1..=CARS {
            let angle = (i as f64 * 0.01) + f64::from(car) * 0.3;
            events.push(Event::new(
                t,
                Record::Position(CarPosition {
                    session_key: key.clone(),
                    car,
                    x: 5000.0 * angle.cos(),
                    y: 3000.0 * angle.sin(),
                    z: 0.0,
                    spline: None,
                }),
            ));
        }
        if i % 1000 == 0 {
            for car in 1..=CARS {
                events.push(Event::new(
                    t,
                    Record::RacePosition(RacePosition {
                        session_key: key.clone(),
                        car,
                        position: (car + (i / 1000) as u32) % CARS + 1,
                    }),
                ));
            }
        }
    }
    let end = start + SAMPLES * 270_000_000;
    events.push(Event::new(
        end,
        Record::SessionEnd(SessionEnd { session_key: key }),
    ));
    events
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let events = race();
    let total = events.len();
    let config = ResampleConfig::default();
    let mut component = config
        .build(&build_context("resample", "."))
        .expect("builds");
    let mut wiring = wire("resample", true);
    let input = wiring.input.take().expect("input");

    let batches: Vec<Arc<Vec<Event>>> = events
        .chunks(1024)
        .map(|chunk| Arc::new(chunk.to_vec()))
        .collect();
    drop(events);

    let started = Instant::now();
    let feeder = tokio::spawn(async move {
        for batch in batches {
            input.push(batch, WhenFull::Block).await;
        }
        input.close();
    });
    component.run(&mut wiring.io).await.expect("runs");
    let elapsed = started.elapsed();
    feeder.await.expect("feeder");
    let out = drain(&wiring.output);
    let frames = out
        .iter()
        .filter(|e| matches!(e.record, Record::Frame(_)))
        .count();
    println!(
        "resample: {total} events in {:.1} ms = {:.1} M events/s; {frames} frames out",
        elapsed.as_secs_f64() * 1000.0,
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
}
