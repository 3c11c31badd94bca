//! Source `emperor`: live race control of an Assetto Corsa Server Manager / Emperor Servers
//! server over its WebSocket (`/api/race-control`, FORMATS.md section 4).
//!
//! The server only writes: the last full snapshot on connect, then events as they happen.
//! This component is the I/O around [`RaceControl`](crate::state::RaceControl), which turns
//! each frame into records:
//!
//! - connects to `url` (`ws://` or `wss://`; TLS with rustls and the system's root
//!   certificates), with `connect_timeout_ms`;
//! - reads frames and applies them; records are sent in batches (every frame already waiting
//!   is applied before one send, up to 1000);
//! - when the connection fails, closes, or stays silent for `idle_timeout_ms` (the server
//!   pings every 10 s), it reconnects forever with exponential backoff and jitter from
//!   `reconnect_initial_ms` to `reconnect_max_ms`, reset once a connection delivered a
//!   frame. The state lives in the component, so after a reconnect the next snapshot is
//!   compared with what was known: joins, leaves and laps that happened meanwhile are emitted
//!   once, and no lap twice;
//! - malformed frames are counted as errors, logged (the first few, then every 1000th) and
//!   skipped; unknown event types are skipped (or passed on as `json` with `emit_unknown`);
//! - stops when the pipeline shuts down.
//!
//! ```toml
//! [sources.race]
//! type = "emperor"
//! url = "wss://yorkfs.emperorservers.com/api/race-control"
//! coordinates = "world"        # or "map": track-map pixels via TrackMapData
//! # session_key = "york"       # fixed key instead of {server}.{session}.{start}
//! emit_unknown = false         # pass unknown event types on as raw `json` records
//! connect_timeout_ms = 10000
//! idle_timeout_ms = 30000      # reconnect when nothing (not even a ping) arrives this long
//! reconnect_initial_ms = 500
//! reconnect_max_ms = 30000
//! ```

use pitwall_api::redact;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use pitwall_api::backoff::Backoff;
use pitwall_api::component::OptionProblem;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::state::{Coordinates, Outcome, RaceControl, StateOptions};

/// Options of the `emperor` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmperorConfig {
    /// The race-control WebSocket, e.g. `wss://yorkfs.emperorservers.com/api/race-control`.
    pub url: String,
    /// Frame of positions and collisions: `world` (metres: x = X, y = Z, z = Y) or `map`
    /// (track-map pixels: `(X + offset_x) / scale_factor`, `(Z + offset_y) / scale_factor`).
    #[serde(default)]
    pub coordinates: Coordinates,
    /// A fixed session key for every record instead of the derived
    /// `{server}.{session}.{start time}`.
    #[serde(default)]
    pub session_key: Option<String>,
    /// Pass frames of unknown event types on as raw `json` records
    /// (`{source, session_key, event_type, message}`) instead of skipping them.
    #[serde(default)]
    pub emit_unknown: bool,
    /// Give up a connection attempt after this many ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Reconnect when nothing at all (not even a ping) arrived for this many ms.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// First delay before reconnecting (ms); doubles up to `reconnect_max_ms`, with jitter.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnection attempts (ms).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    30_000
}
fn default_reconnect_initial_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}

/// The host of a `ws://` / `wss://` URL (for the session key when the server has no name).
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

impl ComponentConfig for EmperorConfig {
    fn emits(&self) -> Kinds {
        let kinds = Kinds::of(&[
            RecordKind::Session,
            RecordKind::SessionEnd,
            RecordKind::Position,
            RecordKind::Standing,
            RecordKind::Lap,
            RecordKind::Connection,
            RecordKind::Collision,
            RecordKind::Chat,
        ]);
        if self.emit_unknown {
            kinds.with(Kinds::of(&[RecordKind::Json]))
        } else {
            kinds
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if url_host(&self.url).is_none() {
            problems.push(OptionProblem::new(
                "url",
                format!(
                    "`{}` is not a WebSocket URL; write it as `wss://host/api/race-control` (or `ws://` without TLS)",
                    self.url
                ),
            ));
        }
        if let Some(key) = &self.session_key {
            if key.trim().is_empty() {
                problems.push(OptionProblem::new("session_key", "must not be empty"));
            }
        }
        for (key, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("reconnect_initial_ms", self.reconnect_initial_ms),
            ("reconnect_max_ms", self.reconnect_max_ms),
        ] {
            if value == 0 {
                problems.push(OptionProblem::new(key, "must be at least 1"));
            }
        }
        if self.reconnect_max_ms < self.reconnect_initial_ms {
            problems.push(OptionProblem::new(
                "reconnect_max_ms",
                "must be at least reconnect_initial_ms",
            ));
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let state = RaceControl::new(StateOptions {
            coordinates: self.coordinates,
            session_key: self.session_key.clone(),
            emit_unknown: self.emit_unknown,
            fallback_server_name: url_host(&self.url).unwrap_or("server").to_string(),
        });
        Ok(Box::new(EmperorSource {
            config: self.clone(),
            state,
            malformed: 0,
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<EmperorConfig>(
        "emperor",
        Role::Source,
        "Live race control of an Assetto Corsa Server Manager / Emperor Servers server (WebSocket)",
    )
}

struct EmperorSource {
    config: EmperorConfig,
    /// Survives reconnects and restarts of `run`: that is what keeps laps from repeating.
    state: RaceControl,
    malformed: u64,
}

/// How a connection ended.
enum Ended {
    Shutdown,
    /// Lost; `delivered` tells whether it delivered anything (then backoff restarts).
    Lost {
        delivered: bool,
    },
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Most frames applied before one send.
const MAX_FRAMES_PER_BATCH: usize = 1000;

#[async_trait]
impl Component for EmperorSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        // tokio-tungstenite builds its rustls config with the process-wide provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.reconnect_initial_ms.max(1)),
            Duration::from_millis(self.config.reconnect_max_ms.max(1)),
        );
        loop {
            match self.connection(io).await {
                Ended::Shutdown => return Ok(()),
                Ended::Lost { delivered } => {
                    if delivered {
                        backoff.reset();
                    }
                }
            }
            let delay = backoff.next_delay();
            tracing::info!(component = %io.id, ?delay, "reconnecting to race control");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = io.shutdown.triggered() => return Ok(()),
            }
        }
    }
}

impl EmperorSource {
    async fn connection(&mut self, io: &mut Io) -> Ended {
        let url = self.config.url.as_str();
        let connect = tokio::time::timeout(
            Duration::from_millis(self.config.connect_timeout_ms),
            tokio_tungstenite::connect_async(url),
        );
        let connected = tokio::select! {
            result = connect => result,
            _ = io.shutdown.triggered() => return Ended::Shutdown,
        };
        let mut socket = match connected {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(error)) => {
                io.metrics.add_error();
                tracing::warn!(component = %io.id, url = %redact::url(url), error = %redact::urls_in(&error.to_string()), "cannot connect to race control");
                return Ended::Lost { delivered: false };
            }
            Err(_) => {
                io.metrics.add_error();
                tracing::warn!(component = %io.id, url = %redact::url(url), "connecting to race control timed out");
                return Ended::Lost { delivered: false };
            }
        };
        tracing::info!(component = %io.id, url = %redact::url(url), "connected to race control");
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        let mut delivered = false;
        let mut out = Vec::new();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle, socket.next()) => next,
                _ = io.shutdown.triggered() => {
                    let _ = socket.close(None).await;
                    return Ended::Shutdown;
                }
            };
            let mut item = match next {
                Ok(item) => item,
                Err(_) => {
                    tracing::warn!(component = %io.id, ?idle, "race control went silent; reconnecting");
                    return Ended::Lost { delivered };
                }
            };
            let mut frames = 0;
            loop {
                match item {
                    Some(Ok(message)) => {
                        // Only race-control data counts: a server that accepts and closes
                        // at once is backed off like one that refuses.
                        delivered |= matches!(message, Message::Text(_) | Message::Binary(_));
                        if !self.message(message, io, &mut out) {
                            break;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(component = %io.id, %error, "race control connection lost");
                        self.flush(io, &mut out).await;
                        return Ended::Lost { delivered };
                    }
                    None => {
                        tracing::warn!(component = %io.id, "race control closed the connection");
                        self.flush(io, &mut out).await;
                        return Ended::Lost { delivered };
                    }
                }
                frames += 1;
                if frames >= MAX_FRAMES_PER_BATCH {
                    break;
                }
                match socket.next().now_or_never() {
                    Some(next) => item = next,
                    None => break,
                }
            }
            self.flush(io, &mut out).await;
        }
    }

    /// Apply one WebSocket message; false when it was a close frame.
    fn message(&mut self, message: Message, io: &Io, out: &mut Vec<Event>) -> bool {
        let text = match &message {
            Message::Text(text) => text.as_str(),
            Message::Binary(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.malformed(io, "a binary frame that is not UTF-8");
                    return true;
                }
            },
            Message::Close(_) => return false,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return true,
        };
        match self.state.apply(text, now_ns(), out) {
            Outcome::Applied | Outcome::Empty => {}
            Outcome::Unknown(kind) => {
                tracing::debug!(component = %io.id, kind, "unknown race-control event type");
            }
            Outcome::Malformed(reason) => self.malformed(io, &reason),
        }
        true
    }

    fn malformed(&mut self, io: &Io, reason: &str) {
        io.metrics.add_error();
        self.malformed += 1;
        if self.malformed <= 5 || self.malformed % 1000 == 0 {
            tracing::warn!(component = %io.id, count = self.malformed, reason, "skipped a malformed race-control frame");
        }
    }

    async fn flush(&mut self, io: &Io, out: &mut Vec<Event>) {
        if !out.is_empty() {
            io.output.send(std::mem::take(out)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::testing::parse_config;

    #[test]
    fn hosts_and_checks() {
        assert_eq!(url_host("wss://a.b:443/api/race-control"), Some("a.b"));
        assert_eq!(url_host("ws://127.0.0.1:9/x"), Some("127.0.0.1"));
        assert_eq!(url_host("https://a.b/"), None);
        let config: EmperorConfig = parse_config("url = \"https://a.b/\"\nreconnect_max_ms = 1");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["url", "reconnect_max_ms"]);
        let config: EmperorConfig = parse_config("url = \"wss://a.b/api/race-control\"");
        assert!(config.check().is_empty());
        assert!(!config.emits().contains(RecordKind::Json));
    }
}
