//! Sink `rest`: the latest records of chosen kinds as JSON documents at configured routes.
//!
//! Each entry of `routes` maps a path to a record kind and to what is kept of it:
//!
//! - `keep = "latest"` (default): the newest record, one JSON object. Before the first one
//!   arrives the route answers **404** (there is nothing to show yet, and `null` would look
//!   like data).
//! - `keep = "per_key"`: a JSON array with the newest record per key, sorted by key. The key
//!   is the record's session plus its driver or car number (`driver`, `lap`, `interval`,
//!   `stint`, `pit`, `session_result`, `starting_grid`, `position`, `car_data`,
//!   `race_position`, `reference_path`, and `race_control` when it names a driver), its
//!   document name (`document`), or just its session (`session`, `weather`, `track_layout`,
//!   `race_metadata`, `frame`, `session_end`). Before any record: `[]`.
//! - `keep = "all"`: a JSON array of the newest `max_items` records, oldest first. Before
//!   any record: `[]`.
//!
//! Records are served as their own fields, the way a `file` sink writes them but without the
//! `kind` tag (a route serves one kind, so the tag says nothing) and without `time_ns`; a
//! `json` record is served as the JSON it carries. Bodies are serialized on the first
//! request after a change and cached until the next one.
//!
//! Only the configured paths are served: they are literal (no parameters or wildcards), so
//! nothing else on the server, and no file, can be reached through this sink.
//!
//! ```toml
//! [sinks.api]
//! type = "rest"
//! inputs = ["f1"]
//! # when_full = "drop_oldest"      # default: serving the newest value is what matters
//! address = "127.0.0.1:8000"       # shared with other web sinks on the same address
//! [sinks.api.routes]
//! "/api/drivers" = { kind = "driver", keep = "per_key" }
//! "/api/weather" = { kind = "weather" }                   # keep = "latest"
//! "/api/race_control" = { kind = "race_control", keep = "all", max_items = 500 }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pitwall_api::component::{parse_listen_address, OptionProblem};
use pitwall_api::http::{not_found, require_token, HttpServer};
use pitwall_api::record::SessionKey;
use pitwall_api::Secret;
use pitwall_api::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Io, Kinds, Listener,
    Record, RecordKind, Role, WhenFull,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Options of the `rest` sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Address to listen on, `host:port`. Shared with other web sinks on the same address.
    #[serde(default = "default_address")]
    pub address: String,
    /// What to serve: path -> route. Paths are literal, start with `/` and use only
    /// letters, digits and `-._~/`, e.g. `"/api/drivers" = { kind = "driver", keep = "per_key" }`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteConfig>,
    /// Require this token from every client (`Authorization: Bearer TOKEN` or
    /// `?access_token=TOKEN`); usually `"${PITWALL_TOKEN}"`. Default: open to anyone who
    /// can reach the address.
    #[serde(default, deserialize_with = "pitwall_api::secret::non_empty_token")]
    pub token: Option<Secret>,
}

/// One served path.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The record kind served here, by its pipeline name (`driver`, `weather`, ...).
    pub kind: String,
    /// What is kept: `latest` (one object), `per_key` (array, newest per driver/car) or
    /// `all` (array of the newest `max_items`).
    #[serde(default)]
    pub keep: Keep,
    /// With `keep = "all"`: how many of the newest records are kept.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
}

/// What a route keeps of the records of its kind.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The newest record: one JSON object (404 until there is one).
    #[default]
    Latest,
    /// The newest record per key (session and driver/car number): a JSON array.
    PerKey,
    /// The newest `max_items` records, oldest first: a JSON array.
    All,
}

fn default_address() -> String {
    "127.0.0.1:8000".to_string()
}

fn default_max_items() -> usize {
    1000
}

pub fn spec() -> ComponentSpec {
    ComponentSpec::new::<RestConfig>(
        "rest",
        Role::Sink,
        "Serves the latest records of chosen kinds as JSON documents at configured HTTP routes",
    )
    .when_full(WhenFull::DropOldest)
}

/// Whether `path` is a literal route this sink may serve; the reason when not.
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("a route must start with `/`");
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~/".contains(*c)))
    {
        return Err(match bad {
            '{' | '}' | '*' | ':' => {
                "routes are literal paths: parameters and wildcards are not allowed"
            }
            _ => "a route may only use letters, digits and `-._~/`",
        });
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if path.len() > 1 && segments.iter().any(|s| s.is_empty()) {
        return Err("a route must not contain empty segments (`//`) or end with `/`");
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err("a route must not contain `.` or `..` segments");
    }
    Ok(())
}

fn valid_kind_names() -> String {
    RecordKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ComponentConfig for RestConfig {
    fn accepts(&self) -> Kinds {
        let kinds: Vec<RecordKind> = self
            .routes
            .values()
            .filter_map(|route| RecordKind::from_name(&route.kind))
            .collect();
        Kinds::of(&kinds)
    }

    fn listeners(&self) -> Vec<Listener> {
        Listener::http(
            "address",
            &self.address,
            self.routes.keys().cloned().collect(),
        )
    }

    fn check(&self) -> Vec<OptionProblem> {
        let mut problems = Vec::new();
        if let Err(message) = parse_listen_address(&self.address) {
            problems.push(OptionProblem::new("address", message));
        }
        if self.routes.is_empty() {
            problems.push(OptionProblem::new(
                "routes",
                "no routes: add e.g. `routes.\"/api/drivers\" = { kind = \"driver\", keep = \"per_key\" }`",
            ));
        }
        for (path, route) in &self.routes {
            if let Err(message) = check_path(path) {
                problems.push(OptionProblem::new(format!("routes.\"{path}\""), message));
            }
            if RecordKind::from_name(&route.kind).is_none() {
                problems.push(OptionProblem::new(
                    format!("routes.\"{path}\".kind"),
                    format!(
                        "unknown record kind `{}`; valid kinds: {}",
                        route.kind,
                        valid_kind_names()
                    ),
                ));
            }
            if route.max_items == 0 {
                problems.push(OptionProblem::new(
                    format!("routes.\"{path}\".max_items"),
                    "must be at least 1",
                ));
            }
        }
        problems
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError> {
        // The engine runs check() first; this keeps a bad route from reaching axum (which
        // panics on some) when it did not.
        if let Some(problem) = self.check().into_iter().next() {
            return Err(format!("{}: {}", problem.key, problem.message).into());
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (path, route) in &self.routes {
            let Some(kind) = RecordKind::from_name(&route.kind) else {
                return Err(format!("unknown record kind `{}`", route.kind).into());
            };
            routes.push(Arc::new(RouteState {
                path: path.clone(),
                kind,
                data: Mutex::new(RouteData {
                    store: match route.keep {
                        Keep::Latest => Store::Latest(None),
                        Keep::PerKey => Store::PerKey(BTreeMap::new()),
                        Keep::All => Store::All(VecDeque::new(), route.max_items.max(1)),
                    },
                    cache: None,
                }),
            }));
        }
        let address: SocketAddr = parse_listen_address(&self.address)?;
        let server = ctx.http.acquire(address)?;
        Ok(Box::new(RestSink {
            server,
            routes,
            token: self.token.clone(),
        }))
    }
}

/// The key of `keep = "per_key"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RecordKey {
    session: Option<SessionKey>,
    item: KeyItem,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyItem {
    None,
    Number(u32),
    Name(String),
}

fn record_key(record: &Record) -> RecordKey {
    let item = match record {
        Record::Document(r) => KeyItem::Name(r.name.clone()),
        Record::ReferencePath(r) => KeyItem::Number(r.car),
        other => other.car().map_or(KeyItem::None, KeyItem::Number),
    };
    RecordKey {
        session: record.session_key().cloned(),
        item,
    }
}

enum Store {
    Latest(Option<Record>),
    PerKey(BTreeMap<RecordKey, Record>),
    /// The records and the most to keep.
    All(VecDeque<Record>, usize),
}

impl Store {
    fn push(&mut self, record: &Record) {
        match self {
            Store::Latest(latest) => *latest = Some(record.clone()),
            Store::PerKey(map) => {
                map.insert(record_key(record), record.clone());
            }
            Store::All(items, max_items) => {
                while items.len() >= *max_items {
                    items.pop_front();
                }
                items.push_back(record.clone());
            }
        }
    }

    /// The JSON body, or `None` for a `latest` route with nothing yet.
    fn serialize(&self) -> Option<serde_json::Result<Vec<u8>>> {
        fn array<'a>(records: impl Iterator<Item = &'a Record>) -> serde_json::Result<Vec<u8>> {
            let mut out = vec![b'['];
            for (i, record) in records.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                pitwall_api::record::write_payload(&mut out, record)?;
            }
            out.push(b']');
            Ok(out)
        }
        match self {
            Store::Latest(None) => None,
            Store::Latest(Some(record)) => {
                let mut out = Vec::new();
                Some(pitwall_api::record::write_payload(&mut out, record).map(|()| out))
            }
            Store::PerKey(map) => Some(array(map.values())),
            Store::All(items, _) => Some(array(items.iter())),
        }
    }
}

struct RouteData {
    store: Store,
    /// The serialized body; dropped on every change.
    cache: Option<Bytes>,
}

struct RouteState {
    path: String,
    kind: RecordKind,
    data: Mutex<RouteData>,
}

impl RouteState {
    fn respond(&self) -> Response {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if data.cache.is_none() {
            match data.store.serialize() {
                None => {
                    return not_found(format!("no `{}` record has arrived yet", self.kind.name()))
                }
                Some(Ok(body)) => data.cache = Some(Bytes::from(body)),
                Some(Err(error)) => {
                    tracing::warn!(path = %self.path, %error, "record does not serialize");
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "record does not serialize",
                    )
                        .into_response();
                }
            }
        }
        let body = data.cache.clone().unwrap_or_default();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

struct RestSink {
    server: HttpServer,
    routes: Vec<Arc<RouteState>>,
    token: Option<Secret>,
}

#[async_trait]
impl Component for RestSink {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError> {
        let mut router = Router::new();
        for route in &self.routes {
            let state = route.clone();
            router = router.route(
                &route.path,
                get(move || {
                    let state = state.clone();
                    async move { state.respond() }
                }),
            );
        }
        let router = require_token(router, self.token.clone());
        // Held until run returns: the routes are served exactly while this instance runs.
        let _mount = self.server.mount(&io.id, router)?;
        let Some(input) = io.input.as_mut() else {
            return Ok(());
        };
        while let Some(batch) = input.recv().await {
            // One lock per route and batch, not per event.
            for route in &self.routes {
                let mut data = None;
                for event in batch.iter().filter(|event| event.kind() == route.kind) {
                    let data = data.get_or_insert_with(|| {
                        route.data.lock().unwrap_or_else(|e| e.into_inner())
                    });
                    data.store.push(&event.record);
                    data.cache = None;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_literal_and_plain() {
        assert!(check_path("/api/drivers").is_ok());
        assert!(check_path("/").is_ok());
        assert!(check_path("api").is_err());
        assert!(check_path("/api/{id}").is_err());
        assert!(check_path("/api/*rest").is_err());
        assert!(check_path("/api/../etc").is_err());
        assert!(check_path("/api//x").is_err());
        assert!(check_path("/api/").is_err());
        assert!(check_path("/api/x y").is_err());
    }
}
