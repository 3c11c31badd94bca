//! Shared test harness: run a web sink on a real loopback server and talk to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pitwall_api::channel::Queue;
use pitwall_api::http::HttpServer;
use pitwall_api::testing::{build_context, parse_config, wire};
use pitwall_api::{BuildContext, ComponentConfig, ComponentMetrics, Event, WhenFull};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A sink running on its own task, fed through `input`.
pub struct Running {
    pub address: SocketAddr,
    pub input: Arc<Queue>,
    /// What the sink emitted (sinks that also produce, like `dashboard`).
    pub output: Arc<Queue>,
    pub metrics: Arc<ComponentMetrics>,
    pub task: JoinHandle<Result<(), String>>,
    pub ctx: BuildContext,
    /// Keeps the server up for the whole test, even after the sink returned.
    pub server: HttpServer,
}

impl Running {
    pub async fn push(&self, events: Vec<Event>) {
        self.input.push(Arc::new(events), WhenFull::Block).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.expect("HTTP request")
    }

    pub async fn connect(&self, session: &str) -> Client {
        self.connect_path(&format!("/ws/{session}")).await
    }

    pub async fn connect_path(&self, path: &str) -> Client {
        let (client, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", self.address))
            .await
            .expect("WebSocket connects");
        client
    }

    /// End the sink's input and wait for `run` to return.
    pub async fn finish(self) -> Result<(), String> {
        self.input.close();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns after its input ends")
            .expect("run does not panic")
    }
}

/// Build `C` from `options` (the `address` is filled in: a fresh port on 127.0.0.1), run it,
/// and wait until its routes answer at `probe`.
pub async fn start<C>(options: &str, probe: &str) -> Running
where
    C: serde::de::DeserializeOwned + ComponentConfig,
{
    let ctx = build_context("sink", ".");
    let server = ctx
        .http
        .acquire("127.0.0.1:0".parse().unwrap())
        .expect("port 0 binds");
    let address = server.address();
    let options = format!("address = \"{address}\"\n{options}");
    let config: C = parse_config(&options);
    assert_eq!(config.check(), Vec::new(), "options are valid");
    let mut component = config.build(&ctx).expect("sink builds");
    let mut wiring = wire("sink", true);
    let input = wiring.input.take().unwrap();
    let output = wiring.output.clone();
    let metrics = wiring.io.metrics.clone();
    let task = tokio::spawn(async move {
        component
            .run(&mut wiring.io)
            .await
            .map_err(|error| error.to_string())
    });
    let running = Running {
        address,
        input,
        output,
        metrics,
        task,
        ctx,
        server,
    };
    wait_mounted(&running.url(probe)).await;
    running
}

/// Until the routes are mounted, the shared server answers 404 with an empty body.
pub async fn wait_mounted(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = reqwest::get(url).await.expect("HTTP request");
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status != reqwest::StatusCode::NOT_FOUND || !body.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "routes never mounted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next message that is not a ping or pong, within `within`.
pub async fn next_message(client: &mut Client, within: Duration) -> Message {
    tokio::time::timeout(within, async {
        loop {
            match client.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                Some(Err(error)) => panic!("WebSocket error: {error}"),
                None => panic!("WebSocket ended without a close frame"),
            }
        }
    })
    .await
    .expect("a message arrives in time")
}

/// The next TEXT message within `within`.
pub async fn next_text(client: &mut Client, within: Duration) -> String {
    match next_message(client, within).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}
