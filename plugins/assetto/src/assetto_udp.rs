//! Source `assetto_udp`: Assetto Corsa's remote telemetry protocol over UDP (FORMATS.md 5d),
//! for a game on this or another PC, no bridge needed.
//!
//! The conversation, all little-endian:
//!
//! 1. We send a 12-byte request `{identifier = 1, version = 1, operationId = 0}` (handshake)
//!    to the game's port 9996, again every `handshake_retry_ms` until it answers.
//! 2. The game answers with 408 bytes: car, driver, track and track configuration names
//!    (UTF-16LE). They tag every record (`session`, unless the option sets one) and fill
//!    `driver`, `car_model`, `track` and `track_configuration`.
//! 3. We subscribe: `operationId = 1` (`mode = "update"`: one 328-byte `RTCarInfo` per
//!    physics step, emitted as `car_telemetry`) or `2` (`mode = "spot"`: one 212-byte
//!    `RTLap` per lap completed by any car).
//! 4. When nothing arrives for `silence_timeout_ms` the game has gone (quit, restarted, a
//!    new session): we dismiss (`operationId = 3`, in case it is still there) and start
//!    again at 1. On shutdown we dismiss, so the game stops sending.
//!
//! `RTCarInfo` has no velocity vector, angular velocity, tyre temperatures or session
//! status: those stay 0 (status is 2, "live", since the game is sending). `steer` is passed
//! on as the game reports it. Packets of any other size, or 328 bytes not marked `'a'`, are
//! counted as errors, logged (rate-limited) and skipped. Packets from any address but the
//! game's are ignored.
//!
//! Spot mode emits `lap` records — `driver_number` is the game's car index, `lap_number`
//! the lap the game reports, `lap_duration` in seconds — because `RTLap` is exactly "car N
//! completed a lap in T". Each car's name arrives with its laps: a `driver` record
//! (`full_name`) is emitted the first time a car is seen and when its driver changes.
//!
//! Event time is the wall clock on arrival; `monotonic_ns` counts from the source's start.
//!
//! ```toml
//! [sources.ac]
//! type = "assetto_udp"
//! game_address = "127.0.0.1:9996"   # the PC running the game
//! bind = "0.0.0.0:0"                # local address; port 0 = any free port
//! mode = "update"                   # "update": car telemetry; "spot": lap times of every car
//! silence_timeout_ms = 3000         # handshake again after this long without a packet
//! handshake_retry_ms = 1000         # repeat an unanswered handshake this often
//! # session = "rig-1"               # tag for records; default "{driver}@{track}"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::record::{Driver, Lap};
use pitwall_api::telemetry::{game, CarTelemetry};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::net::UdpSocket;

use crate::util::{check_size, finite, lap_ms, now_ns, Bytes, LayoutError, LogLimiter};

/// What to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Car telemetry of the player's car at the physics rate (`car_telemetry`).
    #[default]
    Update,
    /// One event per lap completed by any car (`lap`, `driver`).
    Spot,
}

/// Options of the `assetto_udp` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssettoUdpConfig {
    /// The game's remote telemetry address, `host:port` (the game listens on 9996).
    #[serde(default = "default_game_address")]
    pub game_address: String,
    /// Local address to send from and receive on; port 0 picks a free port.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// `update` for car telemetry, `spot` for lap times of every car.
    #[serde(default)]
    pub mode: Mode,
    /// Handshake again when nothing arrived for this many ms (the game quit or restarted).
    #[serde(default = "default_silence_timeout_ms")]
    pub silence_timeout_ms: u64,
    /// Repeat an unanswered handshake this often (ms).
    #[serde(default = "default_handshake_retry_ms")]
    pub handshake_retry_ms: u64,
    /// Session tag of every record; default `{driver}@{track}` from the game's handshake.
    #[serde(default)]
    pub session: Option<String>,
}

fn default_game_address() -> String {
    "127.0.0.1:9996".into()
}
fn default_bind() -> String {
    "0.0.0.0:0".into()
}
fn default_silence_timeout_ms() -> u64 {
    3000
}
fn default_handshake_retry_ms() -> u64 {
    1000
}

/// `host:port` with a non-empty host and a numeric port.
fn host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

impl ComponentConfig for AssettoUdpConfig {
    fn emits(&self) -> Kinds {
        match self.mode {
            Mode::Update => Kinds::of(&[RecordKind::CarTelemetry]),
            Mode::Spot => Kinds::of(&[RecordKind::Lap, RecordKind::Driver]),
        }
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if host_port(&self.game_address).is_none() {
            problems.push(OptionProblem::new(
                "game_address",
                format!(
                    "`{}` is not `host:port`; write it as `127.0.0.1:9996`",
                    self.game_address
                ),
            ));
        }
        if self.bind.parse::<SocketAddr>().is_err() {
            problems.push(OptionProblem::new(
                "bind",
                format!(
                    "`{}` is not a local address; write it as `0.0.0.0:0` (any interface, any port)",
                    self.bind
                ),
            ));
        }
        for (key, value) in [
            ("silence_timeout_ms", self.silence_timeout_ms),
            ("handshake_retry_ms", self.handshake_retry_ms),
        ] {
            if value == 0 {
                problems.push(OptionProblem::new(key, "must be at least 1"));
            }
        }
        if self.session.as_deref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(OptionProblem::new("session", "must not be empty"));
        }
        problems
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let bind: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| format!("`{}` is not a local address", self.bind))?;
        Ok(Box::new(AssettoUdpSource {
            config: self.clone(),
            bind,
            started: Instant::now(),
            malformed: LogLimiter::default(),
            drivers: HashMap::new(),
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<AssettoUdpConfig>(
        "assetto_udp",
        Role::Source,
        "Assetto Corsa remote telemetry over UDP (handshake, car updates or lap spots; re-handshakes when the game restarts)",
    )
}

// ---------------------------------------------------------------------------------------
// The protocol: pure functions over bytes.

/// Request operations (`operationId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Operation {
    Handshake = 0,
    SubscribeUpdate = 1,
    SubscribeSpot = 2,
    Dismiss = 3,
}

pub const REQUEST_BYTES: usize = 12;
pub const HANDSHAKE_REPLY_BYTES: usize = 408;
pub const CAR_INFO_BYTES: usize = 328;
pub const LAP_BYTES: usize = 212;

/// The 12 bytes of a request: `identifier = 1, version = 1, operationId`.
pub fn encode_request(operation: Operation) -> [u8; REQUEST_BYTES] {
    let mut bytes = [0u8; REQUEST_BYTES];
    bytes[0..4].copy_from_slice(&1i32.to_le_bytes());
    bytes[4..8].copy_from_slice(&1i32.to_le_bytes());
    bytes[8..12].copy_from_slice(&(operation as i32).to_le_bytes());
    bytes
}

/// The `operationId` of a request (what a fake game reads), if it is one.
pub fn parse_request(bytes: &[u8]) -> Result<i32, LayoutError> {
    check_size("request", bytes, REQUEST_BYTES)?;
    Ok(Bytes(bytes).i32(8))
}

/// The game's answer to the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeReply {
    pub car_name: String,
    pub driver_name: String,
    pub identifier: i32,
    pub version: i32,
    pub track_name: String,
    pub track_config: String,
}

/// A name from the handshake: UTF-16LE up to NUL. Some game builds pad names with `%`
/// instead of NULs, so a `%` also ends the name (no car, driver or track name has one).
fn name(bytes: Bytes<'_>, offset: usize) -> String {
    let text = bytes.utf16(offset, 50);
    match text.find('%') {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

pub fn parse_handshake_reply(bytes: &[u8]) -> Result<HandshakeReply, LayoutError> {
    check_size("handshake reply", bytes, HANDSHAKE_REPLY_BYTES)?;
    let b = Bytes(bytes);
    Ok(HandshakeReply {
        car_name: name(b, 0),
        driver_name: name(b, 100),
        identifier: b.i32(200),
        version: b.i32(204),
        track_name: name(b, 208),
        track_config: name(b, 308),
    })
}

/// The fields of `RTCarInfo` this source uses, as the game sends them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CarInfo {
    pub speed_kmh: f32,
    pub is_in_pit: bool,
    pub acc_g_vertical: f32,
    pub acc_g_horizontal: f32,
    pub acc_g_frontal: f32,
    pub lap_time_ms: i32,
    pub last_lap_ms: i32,
    pub best_lap_ms: i32,
    pub lap_count: i32,
    pub gas: f32,
    pub brake: f32,
    pub clutch: f32,
    pub engine_rpm: f32,
    pub steer: f32,
    /// As the game counts: 0 = R, 1 = N, 2 = first.
    pub gear: i32,
    pub tyre_slip: [f32; 4],
    pub load: [f32; 4],
    pub car_position_normalized: f32,
    pub car_coordinates: [f32; 3],
}

pub fn parse_car_info(bytes: &[u8]) -> Result<CarInfo, LayoutError> {
    check_size("RTCarInfo", bytes, CAR_INFO_BYTES)?;
    let b = Bytes(bytes);
    if b.u8(0) != b'a' {
        return Err(LayoutError::Invalid {
            what: "RTCarInfo",
            reason: "does not start with the identifier 'a'",
        });
    }
    Ok(CarInfo {
        speed_kmh: b.f32(8),
        is_in_pit: b.bool(24),
        acc_g_vertical: b.f32(28),
        acc_g_horizontal: b.f32(32),
        acc_g_frontal: b.f32(36),
        lap_time_ms: b.i32(40),
        last_lap_ms: b.i32(44),
        best_lap_ms: b.i32(48),
        lap_count: b.i32(52),
        gas: b.f32(56),
        brake: b.f32(60),
        clutch: b.f32(64),
        engine_rpm: b.f32(68),
        steer: b.f32(72),
        gear: b.i32(76),
        tyre_slip: b.f32s(148),
        load: b.f32s(180),
        car_position_normalized: b.f32(308),
        car_coordinates: b.f32s(316),
    })
}

/// `RTLap`: a car completed a lap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtLap {
    pub car_identifier_number: i32,
    pub lap: i32,
    pub driver_name: String,
    pub car_name: String,
    pub time_ms: i32,
}

pub fn parse_lap(bytes: &[u8]) -> Result<RtLap, LayoutError> {
    check_size("RTLap", bytes, LAP_BYTES)?;
    let b = Bytes(bytes);
    Ok(RtLap {
        car_identifier_number: b.i32(0),
        lap: b.i32(4),
        driver_name: b.utf16(8, 50),
        car_name: b.utf16(108, 50),
        time_ms: b.i32(208),
    })
}

/// Who and where, from the handshake: repeated in every record.
#[derive(Debug, Clone)]
pub struct Identity {
    pub session: Arc<str>,
    pub driver: Option<Arc<str>>,
    pub car_model: Option<Arc<str>>,
    pub track: Option<Arc<str>>,
    pub track_configuration: Option<Arc<str>>,
}

impl Identity {
    pub fn new(reply: &HandshakeReply, session: Option<&str>) -> Self {
        let text = |s: &str| (!s.is_empty()).then(|| Arc::<str>::from(s));
        let session = match session {
            Some(session) => session.to_string(),
            None => format!("{}@{}", reply.driver_name, reply.track_name),
        };
        Self {
            session: session.into(),
            driver: text(&reply.driver_name),
            car_model: text(&reply.car_name),
            track: text(&reply.track_name),
            track_configuration: text(&reply.track_config),
        }
    }
}

/// `RTCarInfo` as the common record (see the module docs for what it lacks).
pub fn car_telemetry(info: &CarInfo, identity: &Identity, monotonic_ns: u64) -> CarTelemetry {
    CarTelemetry {
        game: game::ASSETTO_CORSA.into(),
        session: identity.session.clone(),
        car_id: 0,
        is_player: true,
        monotonic_ns,
        driver: identity.driver.clone(),
        car_model: identity.car_model.clone(),
        track: identity.track.clone(),
        track_configuration: identity.track_configuration.clone(),
        speed_kmh: finite(info.speed_kmh),
        throttle: finite(info.gas),
        brake: finite(info.brake),
        clutch: finite(info.clutch),
        steering: finite(info.steer),
        gear: info.gear.saturating_sub(1),
        rpm: finite(info.engine_rpm),
        max_rpm: 0.0,
        acc_g: [
            finite(info.acc_g_horizontal),
            finite(info.acc_g_vertical),
            finite(info.acc_g_frontal),
        ],
        velocity: [0.0; 3],
        angular_velocity: [0.0; 3],
        tyre_slip: info.tyre_slip.map(finite),
        tyre_load: info.load.map(finite),
        tyre_temp_c: [0.0; 4],
        suspension_travel: [0.0; 4],
        position: info.car_coordinates.map(finite),
        status: 2,
        session_type: None,
        completed_laps: info.lap_count,
        place: 0,
        spline: finite(info.car_position_normalized),
        current_lap_s: lap_ms(info.lap_time_ms),
        last_lap_s: lap_ms(info.last_lap_ms),
        best_lap_s: lap_ms(info.best_lap_ms),
        lap_time_s: None,
        delta_lap_s: 0.0,
        in_pit: info.is_in_pit,
    }
}

// ---------------------------------------------------------------------------------------
// The component.

struct AssettoUdpSource {
    config: AssettoUdpConfig,
    bind: SocketAddr,
    started: Instant,
    malformed: LogLimiter,
    /// Spot mode: the driver last announced per car, so names are sent when they change.
    drivers: HashMap<i32, String>,
}

/// Most packets turned into one batch.
const MAX_PACKETS_PER_BATCH: usize = 512;

enum Phase {
    Shutdown,
    /// The game went silent or unreachable: handshake again.
    Lost,
}

#[async_trait]
impl Component for AssettoUdpSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let socket = UdpSocket::bind(self.bind)
            .await
            .map_err(|error| format!("cannot bind UDP {}: {error}", self.bind))?;
        tracing::info!(component = %io.id, local = ?socket.local_addr().ok(), game = %self.config.game_address, "remote telemetry client ready");
        loop {
            let game = match self.resolve(io).await {
                Some(game) => game,
                None => return Ok(()),
            };
            let Some(identity) = self.handshake(&socket, game, io).await else {
                return Ok(());
            };
            let subscribe = match self.config.mode {
                Mode::Update => Operation::SubscribeUpdate,
                Mode::Spot => Operation::SubscribeSpot,
            };
            if let Err(error) = socket.send_to(&encode_request(subscribe), game).await {
                tracing::warn!(component = %io.id, %error, "cannot subscribe");
                continue;
            }
            tracing::info!(component = %io.id, session = %identity.session, mode = ?self.config.mode, "subscribed to the game");
            let phase = self.stream(&socket, game, &identity, io).await;
            // Either way the game should stop sending to us.
            let _ = socket
                .send_to(&encode_request(Operation::Dismiss), game)
                .await;
            match phase {
                Phase::Shutdown => return Ok(()),
                Phase::Lost => {
                    tracing::info!(component = %io.id, "the game went silent; handshaking again");
                }
            }
        }
    }
}

impl AssettoUdpSource {
    /// The game's address (looked up again each time: a host name may move). `None` on
    /// shutdown.
    async fn resolve(&self, io: &Io) -> Option<SocketAddr> {
        let retry = Duration::from_millis(self.config.handshake_retry_ms.max(1));
        loop {
            let lookup = tokio::net::lookup_host(self.config.game_address.as_str());
            let found = tokio::select! {
                found = lookup => found,
                _ = io.shutdown.triggered() => return None,
            };
            let same_family = |a: &SocketAddr| a.is_ipv4() == self.bind.is_ipv4();
            match found.map(|addrs| addrs.collect::<Vec<_>>()) {
                Ok(addrs) => {
                    if let Some(addr) = addrs.iter().find(|a| same_family(a)).or(addrs.first()) {
                        return Some(*addr);
                    }
                    tracing::warn!(component = %io.id, address = %self.config.game_address, "game address resolves to nothing");
                }
                Err(error) => {
                    tracing::warn!(component = %io.id, address = %self.config.game_address, %error, "cannot resolve the game address");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = io.shutdown.triggered() => return None,
            }
        }
    }

    /// Handshake until the game answers; `None` on shutdown.
    async fn handshake(&self, socket: &UdpSocket, game: SocketAddr, io: &Io) -> Option<Identity> {
        let retry = Duration::from_millis(self.config.handshake_retry_ms.max(1));
        let mut buf = vec![0u8; 2048];
        loop {
            if let Err(error) = socket
                .send_to(&encode_request(Operation::Handshake), game)
                .await
            {
                tracing::debug!(component = %io.id, %error, "handshake not sent");
            }
            let deadline = tokio::time::Instant::now() + retry;
            loop {
                let received = tokio::select! {
                    received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)) => received,
                    _ = io.shutdown.triggered() => return None,
                };
                match received {
                    Err(_) => break, // no answer yet: ask again
                    Ok(Err(error)) => {
                        // e.g. ICMP port unreachable from a previous send: the game is not up.
                        tracing::debug!(component = %io.id, %error, "no game yet");
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => break,
                            _ = io.shutdown.triggered() => return None,
                        }
                    }
                    Ok(Ok((len, from))) => {
                        if from != game {
                            continue;
                        }
                        // Packets of an old subscription may still be in flight: only
                        // the reply counts here.
                        if let Ok(reply) = parse_handshake_reply(&buf[..len]) {
                            tracing::info!(
                                component = %io.id,
                                driver = %reply.driver_name,
                                car = %reply.car_name,
                                track = %reply.track_name,
                                config = %reply.track_config,
                                "the game answered the handshake"
                            );
                            return Some(Identity::new(&reply, self.config.session.as_deref()));
                        }
                    }
                }
            }
        }
    }

    /// Receive and emit until silence or shutdown.
    async fn stream(
        &mut self,
        socket: &UdpSocket,
        game: SocketAddr,
        identity: &Identity,
        io: &Io,
    ) -> Phase {
        let silence = Duration::from_millis(self.config.silence_timeout_ms.max(1));
        let mut buf = vec![0u8; 2048];
        let mut out: Vec<Event> = Vec::new();
        loop {
            let received = tokio::select! {
                received = tokio::time::timeout(silence, socket.recv_from(&mut buf)) => received,
                _ = io.shutdown.triggered() => return Phase::Shutdown,
            };
            let (len, from) = match received {
                Err(_) => return Phase::Lost,
                Ok(Err(error)) => {
                    tracing::debug!(component = %io.id, %error, "receive failed");
                    // Unreachable game: let silence decide, but do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Ok(Ok(received)) => received,
            };
            let now = now_ns();
            if from == game {
                self.packet(&buf[..len], identity, now, io, &mut out);
            }
            // Everything already waiting goes into the same batch.
            for _ in 1..MAX_PACKETS_PER_BATCH {
                match socket.try_recv_from(&mut buf) {
                    Ok((len, from)) if from == game => {
                        self.packet(&buf[..len], identity, now, io, &mut out)
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if !out.is_empty() {
                io.output.send(std::mem::take(&mut out)).await;
            }
        }
    }

    fn packet(
        &mut self,
        bytes: &[u8],
        identity: &Identity,
        now: i64,
        io: &Io,
        out: &mut Vec<Event>,
    ) {
        let result = match (self.config.mode, bytes.len()) {
            (_, HANDSHAKE_REPLY_BYTES) => Ok(()), // a late duplicate answer
            (Mode::Update, _) => parse_car_info(bytes).map(|info| {
                let monotonic = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(0);
                let car = car_telemetry(&info, identity, monotonic);
                out.push(Event::new(now, Record::CarTelemetry(Arc::new(car))));
            }),
            (Mode::Spot, _) => parse_lap(bytes).map(|lap| self.lap(lap, identity, now, out)),
        };
        if let Err(error) = result {
            io.metrics.add_error();
            if let Some(count) = self.malformed.note() {
                tracing::warn!(component = %io.id, %error, count, "skipped a malformed packet");
            }
        }
    }

    fn lap(&mut self, lap: RtLap, identity: &Identity, now: i64, out: &mut Vec<Event>) {
        let Ok(car) = u32::try_from(lap.car_identifier_number) else {
            return;
        };
        if !lap.driver_name.is_empty()
            && self.drivers.get(&lap.car_identifier_number) != Some(&lap.driver_name)
        {
            self.drivers
                .insert(lap.car_identifier_number, lap.driver_name.clone());
            out.push(Event::new(
                now,
                Record::Driver(Arc::new(Driver {
                    session_key: identity.session.clone(),
                    driver_number: car,
                    full_name: Some(lap.driver_name.clone()),
                    broadcast_name: Some(lap.driver_name.clone()),
                    ..Default::default()
                })),
            ));
        }
        out.push(Event::new(
            now,
            Record::Lap(Arc::new(Lap {
                session_key: identity.session.clone(),
                driver_number: car,
                lap_number: u32::try_from(lap.lap).unwrap_or(0),
                lap_duration: lap_ms(lap.time_ms).map(f64::from),
                ..Default::default()
            })),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::testing::parse_config;

    fn put_f32(bytes: &mut [u8], offset: usize, value: f32) {
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
    fn put_i32(bytes: &mut [u8], offset: usize, value: i32) {
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
    fn put_utf16(bytes: &mut [u8], offset: usize, text: &str) {
        for (i, unit) in text.encode_utf16().enumerate() {
            bytes[offset + 2 * i..offset + 2 * i + 2].copy_from_slice(&unit.to_le_bytes());
        }
    }

    #[test]
    fn requests_are_three_little_endian_ints() {
        let bytes = encode_request(Operation::Dismiss);
        assert_eq!(bytes, [1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(parse_request(&bytes), Ok(3));
        assert!(parse_request(&bytes[..8]).is_err());
    }

    #[test]
    fn handshake_reply_names() {
        let mut bytes = vec![0u8; HANDSHAKE_REPLY_BYTES];
        put_utf16(&mut bytes, 0, "ks_ferrari_sf15t");
        put_utf16(&mut bytes, 100, "Mario Rossi%%%%");
        put_i32(&mut bytes, 200, 4242);
        put_i32(&mut bytes, 204, 1);
        put_utf16(&mut bytes, 208, "monza");
        put_utf16(&mut bytes, 308, "junior");
        let reply = parse_handshake_reply(&bytes).unwrap();
        assert_eq!(reply.car_name, "ks_ferrari_sf15t");
        assert_eq!(reply.driver_name, "Mario Rossi");
        assert_eq!(reply.identifier, 4242);
        assert_eq!(reply.track_name, "monza");
        assert_eq!(reply.track_config, "junior");
        let identity = Identity::new(&reply, None);
        assert_eq!(&*identity.session, "Mario Rossi@monza");
        assert_eq!(&*Identity::new(&reply, Some("rig-1")).session, "rig-1");
        assert!(parse_handshake_reply(&bytes[..407]).is_err());
    }

    #[test]
    fn car_info_offsets_and_conventions() {
        let mut bytes = vec![0u8; CAR_INFO_BYTES];
        bytes[0] = b'a';
        put_i32(&mut bytes, 4, 328);
        put_f32(&mut bytes, 8, 201.5);
        bytes[24] = 1;
        put_f32(&mut bytes, 28, 0.9);
        put_f32(&mut bytes, 32, -1.25);
        put_f32(&mut bytes, 36, 0.5);
        put_i32(&mut bytes, 40, 41_200);
        put_i32(&mut bytes, 44, 108_300);
        put_i32(&mut bytes, 48, 0);
        put_i32(&mut bytes, 52, 7);
        put_f32(&mut bytes, 56, 1.0);
        put_f32(&mut bytes, 60, 0.25);
        put_f32(&mut bytes, 64, 0.5);
        put_f32(&mut bytes, 68, 7250.0);
        put_f32(&mut bytes, 72, -0.3);
        put_i32(&mut bytes, 76, 0);
        for (i, v) in [0.1f32, 0.2, 0.3, 0.4].iter().enumerate() {
            put_f32(&mut bytes, 148 + 4 * i, *v);
            put_f32(&mut bytes, 180 + 4 * i, 3000.0 + i as f32);
        }
        put_f32(&mut bytes, 308, 0.75);
        put_f32(&mut bytes, 316, 10.0);
        put_f32(&mut bytes, 320, f32::NAN);
        put_f32(&mut bytes, 324, -30.0);
        let info = parse_car_info(&bytes).unwrap();
        let identity = Identity::new(
            &HandshakeReply {
                driver_name: "Mario".into(),
                track_name: "monza".into(),
                ..Default::default()
            },
            None,
        );
        let car = car_telemetry(&info, &identity, 99);
        assert_eq!(car.speed_kmh, 201.5);
        assert!(car.in_pit);
        assert_eq!(
            car.acc_g,
            [-1.25, 0.9, 0.5],
            "x lateral, y vertical, z longitudinal"
        );
        assert_eq!(car.current_lap_s, Some(41.2));
        assert_eq!(car.last_lap_s, Some(108.3));
        assert_eq!(car.best_lap_s, None);
        assert_eq!(car.completed_laps, 7);
        assert_eq!((car.throttle, car.brake, car.clutch), (1.0, 0.25, 0.5));
        assert_eq!(car.rpm, 7250.0);
        assert_eq!(car.steering, -0.3);
        assert_eq!(car.gear, -1, "the game's 0 is reverse");
        assert_eq!(car.tyre_slip, [0.1, 0.2, 0.3, 0.4]);
        assert_eq!(car.tyre_load, [3000.0, 3001.0, 3002.0, 3003.0]);
        assert_eq!(car.spline, 0.75);
        assert_eq!(car.position, [10.0, 0.0, -30.0], "NaN becomes 0");
        assert_eq!(car.track.as_deref(), Some("monza"));
        assert_eq!(car.monotonic_ns, 99);

        bytes[0] = b'b';
        assert!(parse_car_info(&bytes).is_err());
        assert!(parse_car_info(&bytes[..327]).is_err());
        assert!(parse_car_info(&[]).is_err());
    }

    #[test]
    fn lap_layout() {
        let mut bytes = vec![0u8; LAP_BYTES];
        put_i32(&mut bytes, 0, 3);
        put_i32(&mut bytes, 4, 12);
        put_utf16(&mut bytes, 8, "Ayrton");
        put_utf16(&mut bytes, 108, "ks_mclaren_mp4");
        put_i32(&mut bytes, 208, 91_234);
        let lap = parse_lap(&bytes).unwrap();
        assert_eq!(
            lap,
            RtLap {
                car_identifier_number: 3,
                lap: 12,
                driver_name: "Ayrton".into(),
                car_name: "ks_mclaren_mp4".into(),
                time_ms: 91_234
            }
        );
        assert!(parse_lap(&bytes[..211]).is_err());
    }

    #[test]
    fn options_and_kinds() {
        let config: AssettoUdpConfig = parse_config("");
        assert_eq!(config.game_address, "127.0.0.1:9996");
        assert_eq!(config.mode, Mode::Update);
        assert!(config.check().is_empty());
        assert!(config.emits().contains(RecordKind::CarTelemetry));
        let config: AssettoUdpConfig = parse_config(
            "mode = \"spot\"\ngame_address = \"nowhere\"\nbind = \"x\"\nsilence_timeout_ms = 0",
        );
        assert!(config.emits().contains(RecordKind::Lap));
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["game_address", "bind", "silence_timeout_ms"]);
        assert_eq!(host_port("game.local:9996"), Some(("game.local", 9996)));
        assert_eq!(host_port("[::1]:9996"), Some(("::1", 9996)));
        assert_eq!(host_port(":9996"), None);
    }
}
