//! Source `assetto_shm`: Assetto Corsa's shared-memory pages (FORMATS.md 5c), read as
//! files.
//!
//! The game publishes three pages, `acpmf_physics`, `acpmf_graphics` and `acpmf_static`,
//! laid out with `#pragma pack(4)`, little-endian, strings as UTF-16LE `wchar_t[N]`.
//!
//! - On the Windows PC running the game, leave `dir` and the paths out: the game's own
//!   mappings `Local\acpmf_physics`, `Local\acpmf_graphics` and `Local\acpmf_static` are
//!   read. (Tested here in the Windows build under Wine, by `scripts/windows-tests.sh`.)
//! - Anywhere (the game under Proton/Wine, or a bridge copying the pages off the Windows
//!   PC), a bridge exposes the same bytes as files: point `dir` at the folder holding
//!   `acpmf_physics`, `acpmf_graphics` and `acpmf_static`, or name each file with
//!   `physics_path`, `graphics_path`, `static_path`.
//!
//! Every `poll_interval_ms` the physics page is read; when its `packetId` changed since the
//! last frame (the game advanced a physics step, ~333 Hz) the graphics page is read too and
//! one `car_telemetry` record is emitted. The static page (car, track, driver, max rpm) is
//! read at start and then once a second, and is optional: without it those fields are
//! empty. A `packetId` of 0 (a zeroed page: the game is not running) emits nothing.
//!
//! Pages are checked before reading: a page shorter than its layout (a bridge caught
//! mid-write, the wrong file) is counted as an error, logged (rate-limited) and skipped;
//! the same bad page seen again on the next polls is not counted again. Missing files are
//! not errors, nor are mappings nobody created: the game or the bridge is simply not
//! running yet (logged once). There is no
//! torn-read guard in the game's pages, so neither is there one here.
//!
//! Fields read beyond the ones FORMATS.md lists (`localAngularVel` at 296, `clutch` at 364)
//! come from the game's full physics layout and are used only when the page is that long.
//!
//! Event time is the wall clock when the page was read; `monotonic_ns` counts from the
//! source's start.
//!
//! ```toml
//! [sources.ac]
//! type = "assetto_shm"
//! dir = "/dev/shm/ac"               # holds acpmf_physics, acpmf_graphics, acpmf_static
//! # physics_path = "..."            # or each page on its own (overrides `dir`)
//! # graphics_path = "..."
//! # static_path = "..."
//! poll_interval_ms = 3
//! session = "acpmf"                 # tag of the records
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pitwall_api::component::OptionProblem;
use pitwall_api::telemetry::{game, CarTelemetry};
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Event, Io, Kinds,
    Record, RecordKind, Role,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::util::{check_len, finite, lap_ms, now_ns, Bytes, LayoutError, LogLimiter};

/// Options of the `assetto_shm` source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssettoShmConfig {
    /// Folder with the files `acpmf_physics`, `acpmf_graphics` and `acpmf_static`. On
    /// Windows, leave this and the paths out to read the game's own mappings.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The physics page (overrides `dir`).
    #[serde(default)]
    pub physics_path: Option<PathBuf>,
    /// The graphics page (overrides `dir`).
    #[serde(default)]
    pub graphics_path: Option<PathBuf>,
    /// The static page (overrides `dir`); optional.
    #[serde(default)]
    pub static_path: Option<PathBuf>,
    /// How often the physics page is read (ms). The game updates it about every 3 ms.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Session tag of every record.
    #[serde(default = "default_session")]
    pub session: String,
}

fn default_poll_interval_ms() -> u64 {
    3
}
fn default_session() -> String {
    "acpmf".into()
}

/// Where the three pages are.
#[derive(Debug, Clone, PartialEq)]
pub struct PagePaths {
    pub physics: PathBuf,
    pub graphics: PathBuf,
    pub statics: Option<PathBuf>,
}

impl AssettoShmConfig {
    /// Whether the game's own mappings are read: on Windows, when no file is named at all.
    fn game_mappings(&self) -> bool {
        cfg!(windows)
            && self.dir.is_none()
            && self.physics_path.is_none()
            && self.graphics_path.is_none()
            && self.static_path.is_none()
    }

    /// The pages' paths as written (relative ones not yet resolved); `None` when neither
    /// `dir` nor both of `physics_path` and `graphics_path` say.
    fn paths(&self) -> Option<PagePaths> {
        let in_dir = |name: &str| self.dir.as_ref().map(|dir| dir.join(name));
        Some(PagePaths {
            physics: self
                .physics_path
                .clone()
                .or_else(|| in_dir("acpmf_physics"))?,
            graphics: self
                .graphics_path
                .clone()
                .or_else(|| in_dir("acpmf_graphics"))?,
            statics: self.static_path.clone().or_else(|| in_dir("acpmf_static")),
        })
    }
}

impl ComponentConfig for AssettoShmConfig {
    fn emits(&self) -> Kinds {
        Kinds::of(&[RecordKind::CarTelemetry])
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if self.paths().is_none() && !self.game_mappings() {
            let key = if self.physics_path.is_none() {
                "physics_path"
            } else {
                "graphics_path"
            };
            problems.push(OptionProblem::new(
                key,
                "say where the pages are: `dir` (a folder with acpmf_physics, acpmf_graphics, acpmf_static) or `physics_path` and `graphics_path` (only on Windows, where the game's own mappings are read, may they be left out)",
            ));
        }
        if self.poll_interval_ms == 0 {
            problems.push(OptionProblem::new("poll_interval_ms", "must be at least 1"));
        }
        if self.session.trim().is_empty() {
            problems.push(OptionProblem::new("session", "must not be empty"));
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        let file = |path: &PathBuf| PageSource::File(ctx.resolve_path(path));
        let pages = match self.paths() {
            Some(paths) => [
                Some(file(&paths.physics)),
                Some(file(&paths.graphics)),
                paths.statics.as_ref().map(file),
            ],
            #[cfg(windows)]
            None if self.game_mappings() => MAPPINGS.map(|name| {
                Some(PageSource::Mapping(
                    pitwall_api::shared_memory::NamedMapping::new(name),
                ))
            }),
            None => return Err("set `dir`, or `physics_path` and `graphics_path`".into()),
        };
        Ok(Box::new(AssettoShmSource {
            pages,
            interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            session: self.session.as_str().into(),
            started: Instant::now(),
            last_packet: 0,
            statics: None,
            statics_read: None,
            last_problem: None,
            missing_logged: false,
            errors: LogLimiter::default(),
            buffers: [Vec::new(), Vec::new(), Vec::new()],
        }))
    }
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<AssettoShmConfig>(
        "assetto_shm",
        Role::Source,
        "Assetto Corsa shared-memory pages (physics, graphics, static): the game's mappings on Windows, or files a bridge exposes; one record per physics step",
    )
}

// ---------------------------------------------------------------------------------------
// The pages: pure functions over bytes.

/// Bytes of the physics page up to and including `roll` (the fields FORMATS.md lists).
pub const PHYSICS_MIN_BYTES: usize = 220;
/// Bytes of the graphics page up to and including `carCoordinates`.
pub const GRAPHICS_MIN_BYTES: usize = 264;
/// Bytes of the static page up to and including `maxRpm`.
pub const STATIC_MIN_BYTES: usize = 416;

/// The physics page fields this source uses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhysicsPage {
    pub packet_id: i32,
    pub gas: f32,
    pub brake: f32,
    /// As the game counts: 0 = R, 1 = N, 2 = first.
    pub gear: i32,
    pub rpms: i32,
    pub steer_angle: f32,
    pub speed_kmh: f32,
    pub velocity: [f32; 3],
    pub acc_g: [f32; 3],
    pub wheel_slip: [f32; 4],
    pub wheel_load: [f32; 4],
    pub tyre_core_temperature: [f32; 4],
    pub suspension_travel: [f32; 4],
    /// `None` on a page too short to have it.
    pub local_angular_vel: Option<[f32; 3]>,
    /// `None` on a page too short to have it.
    pub clutch: Option<f32>,
}

pub fn parse_physics(bytes: &[u8]) -> Result<PhysicsPage, LayoutError> {
    check_len("physics page", bytes, PHYSICS_MIN_BYTES)?;
    let b = Bytes(bytes);
    Ok(PhysicsPage {
        packet_id: b.i32(0),
        gas: b.f32(4),
        brake: b.f32(8),
        gear: b.i32(16),
        rpms: b.i32(20),
        steer_angle: b.f32(24),
        speed_kmh: b.f32(28),
        velocity: b.f32s(32),
        acc_g: b.f32s(44),
        wheel_slip: b.f32s(56),
        wheel_load: b.f32s(72),
        tyre_core_temperature: b.f32s(152),
        suspension_travel: b.f32s(184),
        local_angular_vel: (bytes.len() >= 308).then(|| b.f32s(296)),
        clutch: (bytes.len() >= 368).then(|| b.f32(364)),
    })
}

/// The graphics page fields this source uses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GraphicsPage {
    pub packet_id: i32,
    /// 0 off, 1 replay, 2 live, 3 pause.
    pub status: i32,
    /// The game's session type (-1 unknown, 0 practice, 1 qualifying, 2 race, ...).
    pub session: i32,
    pub completed_laps: i32,
    pub position: i32,
    pub i_current_time_ms: i32,
    pub i_last_time_ms: i32,
    pub i_best_time_ms: i32,
    pub is_in_pit: bool,
    pub normalized_car_position: f32,
    pub car_coordinates: [f32; 3],
}

pub fn parse_graphics(bytes: &[u8]) -> Result<GraphicsPage, LayoutError> {
    check_len("graphics page", bytes, GRAPHICS_MIN_BYTES)?;
    let b = Bytes(bytes);
    Ok(GraphicsPage {
        packet_id: b.i32(0),
        status: b.i32(4),
        session: b.i32(8),
        completed_laps: b.i32(132),
        position: b.i32(136),
        i_current_time_ms: b.i32(140),
        i_last_time_ms: b.i32(144),
        i_best_time_ms: b.i32(148),
        is_in_pit: b.i32(160) != 0,
        normalized_car_position: b.f32(248),
        car_coordinates: b.f32s(252),
    })
}

/// The static page fields this source uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StaticPage {
    pub sm_version: String,
    pub ac_version: String,
    pub car_model: String,
    pub track: String,
    pub player_name: String,
    pub player_surname: String,
    pub player_nick: String,
    pub max_rpm: i32,
}

pub fn parse_static(bytes: &[u8]) -> Result<StaticPage, LayoutError> {
    check_len("static page", bytes, STATIC_MIN_BYTES)?;
    let b = Bytes(bytes);
    Ok(StaticPage {
        sm_version: b.utf16(0, 15),
        ac_version: b.utf16(30, 15),
        car_model: b.utf16(68, 33),
        track: b.utf16(134, 33),
        player_name: b.utf16(200, 33),
        player_surname: b.utf16(266, 33),
        player_nick: b.utf16(332, 33),
        max_rpm: b.i32(412),
    })
}

/// Strings of the static page as the record's shared strings.
#[derive(Debug, Clone, Default)]
pub struct StaticNames {
    pub driver: Option<Arc<str>>,
    pub car_model: Option<Arc<str>>,
    pub track: Option<Arc<str>>,
    pub max_rpm: f32,
}

impl StaticNames {
    pub fn new(page: &StaticPage) -> Self {
        let text = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| Arc::<str>::from(s))
        };
        let full_name = format!("{} {}", page.player_name.trim(), page.player_surname.trim());
        Self {
            driver: text(&full_name),
            car_model: text(&page.car_model),
            track: text(&page.track),
            max_rpm: page.max_rpm.max(0) as f32,
        }
    }
}

/// The three pages as the common record.
pub fn car_telemetry(
    physics: &PhysicsPage,
    graphics: &GraphicsPage,
    names: Option<&StaticNames>,
    session: &Arc<str>,
    monotonic_ns: u64,
) -> CarTelemetry {
    CarTelemetry {
        game: game::ASSETTO_CORSA.into(),
        session: session.clone(),
        car_id: 0,
        is_player: true,
        monotonic_ns,
        driver: names.and_then(|n| n.driver.clone()),
        car_model: names.and_then(|n| n.car_model.clone()),
        track: names.and_then(|n| n.track.clone()),
        track_configuration: None,
        speed_kmh: finite(physics.speed_kmh),
        throttle: finite(physics.gas),
        brake: finite(physics.brake),
        clutch: physics.clutch.map_or(0.0, finite),
        steering: finite(physics.steer_angle),
        gear: physics.gear.saturating_sub(1),
        rpm: physics.rpms as f32,
        max_rpm: names.map_or(0.0, |n| n.max_rpm),
        acc_g: physics.acc_g.map(finite),
        velocity: physics.velocity.map(finite),
        angular_velocity: physics.local_angular_vel.unwrap_or_default().map(finite),
        tyre_slip: physics.wheel_slip.map(finite),
        tyre_load: physics.wheel_load.map(finite),
        tyre_temp_c: physics.tyre_core_temperature.map(finite),
        suspension_travel: physics.suspension_travel.map(finite),
        position: graphics.car_coordinates.map(finite),
        status: graphics.status,
        session_type: Some(graphics.session),
        completed_laps: graphics.completed_laps,
        place: graphics.position,
        spline: finite(graphics.normalized_car_position),
        current_lap_s: lap_ms(graphics.i_current_time_ms),
        last_lap_s: lap_ms(graphics.i_last_time_ms),
        best_lap_s: lap_ms(graphics.i_best_time_ms),
        lap_time_s: None,
        delta_lap_s: 0.0,
        in_pit: graphics.is_in_pit,
    }
}

// ---------------------------------------------------------------------------------------
// The component.

/// How often the static page is read again.
const STATIC_REFRESH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Physics = 0,
    Graphics = 1,
    Static = 2,
}

/// The game's mappings, in [`Page`] order.
#[cfg(windows)]
const MAPPINGS: [&str; 3] = [
    "Local\\acpmf_physics",
    "Local\\acpmf_graphics",
    "Local\\acpmf_static",
];

/// Where one page's bytes come from.
enum PageSource {
    File(PathBuf),
    #[cfg(windows)]
    Mapping(pitwall_api::shared_memory::NamedMapping),
}

impl PageSource {
    /// Copy the page into `buffer`; `Ok(false)` when it is not there (yet).
    fn read(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
        buffer.clear();
        let read = match self {
            Self::File(path) => {
                std::fs::File::open(path).and_then(|mut file| file.read_to_end(buffer))
            }
            #[cfg(windows)]
            Self::Mapping(mapping) => mapping.read_all(buffer).map(|()| buffer.len()),
        };
        match read {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            #[cfg(windows)]
            Self::Mapping(mapping) => format!("mapping `{}`", mapping.name()),
        }
    }
}

struct AssettoShmSource {
    /// Physics, graphics and (optional) static, in [`Page`] order.
    pages: [Option<PageSource>; 3],
    interval: Duration,
    session: Arc<str>,
    started: Instant,
    /// The physics `packetId` of the last frame emitted (0: none yet).
    last_packet: i32,
    statics: Option<StaticNames>,
    statics_read: Option<Instant>,
    /// The last bad page seen (page, length), so a page that stays bad counts once.
    last_problem: Option<(Page, usize)>,
    missing_logged: bool,
    errors: LogLimiter,
    /// Reused read buffers, one per page.
    buffers: [Vec<u8>; 3],
}

#[async_trait]
impl Component for AssettoShmSource {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let physics = self.pages[Page::Physics as usize]
            .as_ref()
            .map(PageSource::describe)
            .unwrap_or_default();
        tracing::info!(component = %io.id, %physics, "reading Assetto Corsa shared-memory pages");
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = io.shutdown.triggered() => return Ok(()),
            }
            // Tiny files on a memory file system, or a mapped view: reading them inline takes
            // microseconds.
            if let Some(car) = self.poll(io) {
                io.output
                    .send(vec![Event::new(
                        now_ns(),
                        Record::CarTelemetry(Arc::new(car)),
                    )])
                    .await;
            }
        }
    }
}

impl AssettoShmSource {
    /// One look at the pages: a record when physics advanced.
    fn poll(&mut self, io: &Io) -> Option<CarTelemetry> {
        let physics = self.page(Page::Physics, io, parse_physics)?;
        if physics.packet_id == self.last_packet || physics.packet_id == 0 {
            return None;
        }
        let graphics = self.page(Page::Graphics, io, parse_graphics)?;
        let restarted = physics.packet_id < self.last_packet;
        if restarted
            || self
                .statics_read
                .is_none_or(|at| at.elapsed() >= STATIC_REFRESH)
        {
            self.statics_read = Some(Instant::now());
            if self.pages[Page::Static as usize].is_some() {
                if let Some(page) = self.page(Page::Static, io, parse_static) {
                    self.statics = Some(StaticNames::new(&page));
                }
            }
        }
        self.last_packet = physics.packet_id;
        self.last_problem = None;
        let monotonic = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(0);
        Some(car_telemetry(
            &physics,
            &graphics,
            self.statics.as_ref(),
            &self.session,
            monotonic,
        ))
    }

    /// Read and parse one page; problems are logged and counted (once while they last).
    fn page<T>(
        &mut self,
        page: Page,
        io: &Io,
        parse: fn(&[u8]) -> Result<T, LayoutError>,
    ) -> Option<T> {
        let read = self.pages[page as usize]
            .as_mut()?
            .read(&mut self.buffers[page as usize]);
        // Named only when something is said about it.
        let path = || {
            self.pages[page as usize]
                .as_ref()
                .map(PageSource::describe)
                .unwrap_or_default()
        };
        match read {
            Ok(true) => {}
            Ok(false) => {
                if !self.missing_logged {
                    self.missing_logged = true;
                    tracing::info!(component = %io.id, path = %path(), "page not there yet (is the game or its bridge running?)");
                }
                return None;
            }
            Err(error) => {
                let problem = (page, usize::MAX);
                if self.last_problem != Some(problem) {
                    self.last_problem = Some(problem);
                    io.metrics.add_error();
                    if let Some(count) = self.errors.note() {
                        tracing::warn!(component = %io.id, path = %path(), %error, count, "cannot read a page");
                    }
                }
                return None;
            }
        }
        let buffer = &self.buffers[page as usize];
        match parse(buffer) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let problem = (page, buffer.len());
                if self.last_problem != Some(problem) {
                    self.last_problem = Some(problem);
                    io.metrics.add_error();
                    if let Some(count) = self.errors.note() {
                        tracing::warn!(component = %io.id, path = %path(), %error, count, "skipped a malformed page");
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitwall_api::testing::parse_config;

    #[test]
    fn paths_from_dir_or_options() {
        let config: AssettoShmConfig = parse_config("dir = \"/dev/shm/ac\"");
        assert!(config.check().is_empty());
        let paths = config.paths().unwrap();
        assert_eq!(paths.physics, PathBuf::from("/dev/shm/ac/acpmf_physics"));
        assert_eq!(
            paths.statics,
            Some(PathBuf::from("/dev/shm/ac/acpmf_static"))
        );
        let config: AssettoShmConfig =
            parse_config("dir = \"/a\"\nphysics_path = \"/b/p\"\ngraphics_path = \"/b/g\"");
        let paths = config.paths().unwrap();
        assert_eq!(paths.physics, PathBuf::from("/b/p"));
        assert_eq!(paths.graphics, PathBuf::from("/b/g"));
        assert_eq!(paths.statics, Some(PathBuf::from("/a/acpmf_static")));

        let config: AssettoShmConfig = parse_config("physics_path = \"p\"\npoll_interval_ms = 0");
        let keys: Vec<String> = config.check().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["graphics_path", "poll_interval_ms"]);
        let config: AssettoShmConfig = parse_config("");
        if cfg!(windows) {
            assert!(config.check().is_empty(), "the game's own mappings");
        } else {
            assert_eq!(config.check()[0].key, "physics_path");
        }
    }

    #[test]
    fn short_pages_are_errors_not_panics() {
        assert!(parse_physics(&[0u8; PHYSICS_MIN_BYTES - 1]).is_err());
        assert!(parse_graphics(&[]).is_err());
        assert!(parse_static(&[0u8; 100]).is_err());
        let physics = parse_physics(&[0u8; PHYSICS_MIN_BYTES]).unwrap();
        assert_eq!(physics.clutch, None, "a page without clutch");
        assert_eq!(physics.local_angular_vel, None);
        let physics = parse_physics(&[0u8; 400]).unwrap();
        assert_eq!(physics.clutch, Some(0.0));
    }
}
