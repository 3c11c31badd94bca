//! Fan-out benchmark of the web sinks on the shared hub (about 30 s; wants a quiet machine):
//!
//!     cargo bench -p pitwall-web --bench fanout
//!
//! 1,000 WebSocket clients, 20 cars at 10 frames/s, first of the `cardputer` sink's frame
//! stream, then of the `race_view` sink's updates (cars every frame, the tower changing
//! every second). The sink and its server run on their own runtime whose threads are named
//! `sink-rt`, the clients on another, so the CPU time of the server side can be read per
//! thread from /proc (Linux only) without counting the clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pitwall_api::record::{Frame, FrameCar, RacePosition};
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{ComponentConfig, Event, Record, WhenFull};
use pitwall_web::cardputer::CardputerConfig;
use pitwall_web::race_view::RaceViewConfig;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 1000;
const SECONDS: u64 = 10;

/// CPU seconds (user + system) used so far by this process's threads named `name`.
fn cpu_seconds_of_threads(name: &str) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on every Linux we run on
    let mut total = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        total += utime + stime;
    }
    total as f64 / ticks_per_second
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    thousand_clients_at_ten_frames_per_second(Sink::Cardputer);
    thousand_clients_at_ten_frames_per_second(Sink::RaceView);
}

#[derive(Clone, Copy, Debug)]
enum Sink {
    Cardputer,
    RaceView,
}

impl Sink {
    fn build(
        self,
        ctx: &pitwall_api::BuildContext,
        address: std::net::SocketAddr,
    ) -> Box<dyn pitwall_api::Component> {
        match self {
            Sink::Cardputer => parse_config::<CardputerConfig>(&format!(
                "address = \"{address}\"\nsession_key = \"1\"\nmax_clients = 2000"
            ))
            .build(ctx),
            Sink::RaceView => parse_config::<RaceViewConfig>(&format!(
                "address = \"{address}\"\nmax_clients = 2000"
            ))
            .build(ctx),
        }
        .unwrap()
    }

    fn path(self) -> &'static str {
        match self {
            Sink::Cardputer => "/ws/1",
            Sink::RaceView => "/race/socket",
        }
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn thousand_clients_at_ten_frames_per_second(kind: Sink) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sink-rt")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client-rt")
        .enable_all()
        .build()
        .unwrap();

    let (address, input, _server) = server_rt.block_on(async {
        let ctx = build_context("sink", ".");
        let server = ctx.http.acquire("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = server.address();
        let mut sink = kind.build(&ctx, address);
        let mut wiring = wire("sink", true);
        let input = wiring.input.take().unwrap();
        tokio::spawn(async move { sink.run(&mut wiring.io).await.map_err(|e| e.to_string()) });
        (address, input, server)
    });

    let received = Arc::new(AtomicU64::new(0));
    let first_frame_ms = Arc::new(std::sync::Mutex::new(Vec::new()));
    client_rt.block_on(async {
        // Give the sink a frame so new clients have something to get at once.
        let frame = |t_ms: i64| {
            Event::new(
                0,
                Record::Frame(Arc::new(Frame {
                    session_key: "1".into(),
                    t_ms,
                    cars: (1..=20)
                        .map(|car| FrameCar {
                            car,
                            x: -1234.5 + car as f64 * 37.0,
                            y: 4567.8 - car as f64 * 11.0,
                            position: car,
                        })
                        .collect(),
                })),
            )
        };
        // Every second the race order turns over by one place: the tower changes too.
        let positions = |n: i64| {
            (1..=20u32).map(move |car| {
                Event::new(
                    0,
                    Record::RacePosition(RacePosition {
                        session_key: "1".into(),
                        car,
                        position: (car + (n / 10) as u32) % 20 + 1,
                    }),
                )
            })
        };
        input.push(Arc::new(vec![frame(0)]), WhenFull::Block).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_before = rss_kib();
        for _ in 0..CLIENTS {
            let url = format!("ws://{address}{}", kind.path());
            let received = received.clone();
            let first_frame_ms = first_frame_ms.clone();
            // Small client buffers (tungstenite's default read buffer is 128 KiB), so the
            // memory this process grows by is mostly the server's.
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let (mut client, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), false)
                    .await
                    .unwrap();
            // From the end of the handshake to the first frame.
            let started = Instant::now();
            tokio::spawn(async move {
                let mut first = true;
                while let Some(Ok(message)) = client.next().await {
                    if let Message::Text(_) = message {
                        if first {
                            first = false;
                            first_frame_ms
                                .lock()
                                .unwrap()
                                .push(started.elapsed().as_secs_f64() * 1000.0);
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_client_kib = rss_kib().saturating_sub(rss_before) as f64 / CLIENTS as f64;
        let cpu_before = cpu_seconds_of_threads("sink-rt");
        let received_before = received.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        for n in 1..=(SECONDS * 10) as i64 {
            ticker.tick().await;
            let mut batch = vec![frame(n * 100)];
            if n % 10 == 0 {
                batch.extend(positions(n));
            }
            input.push(Arc::new(batch), WhenFull::Block).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds_of_threads("sink-rt") - cpu_before;
        let delivered = received.load(Ordering::Relaxed) - received_before;
        let mut firsts = first_frame_ms.lock().unwrap().clone();
        firsts.sort_by(f64::total_cmp);
        let p99 = firsts[(firsts.len() * 99 / 100).min(firsts.len() - 1)];
        println!(
            "{kind:?}: {CLIENTS} clients, {wall:.1} s: sink+server CPU {cpu:.2} s = {:.0}% of a core; \
             {delivered} frames delivered ({:.0}% of {}); first message p99 {p99:.1} ms, max {:.1} ms; \
             {per_client_kib:.1} KiB of this process (server and client) per client",
            cpu / wall * 100.0,
            delivered as f64 / (CLIENTS as f64 * SECONDS as f64 * 10.0) * 100.0,
            CLIENTS as u64 * SECONDS * 10,
            firsts.last().unwrap()
        );
        assert!(cpu / wall < 0.5, "sink used more than half a core");
        assert!(p99 < 50.0, "first frames too slow");
    });
    input.close();
    drop(server_rt);
}
