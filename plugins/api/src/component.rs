//! How a component type is described, configured, built and run.
//!
//! A component type is a [`ComponentSpec`]: its `type` name, its role, and a function that
//! turns the options table of a pipeline file into a [`ComponentConfig`]. The config answers
//! the questions graph validation asks (which record kinds it emits and accepts, which
//! addresses it listens on) and builds the running [`Component`].
//!
//! Building is separate from running so that hot reload can build every new component
//! before it stops any old one: if a build fails (a port is taken, a file is missing) the
//! old graph keeps running untouched.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::channel::{Input, Output, WhenFull};
use crate::http::HttpServers;
use crate::metrics::ComponentMetrics;
use crate::record::Kinds;
use crate::shutdown::Shutdown;

/// Where a component sits in the graph: the table it is declared in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

impl Role {
    /// The pipeline-file table: `sources`, `transforms`, `sinks`.
    pub fn table(self) -> &'static str {
        match self {
            Self::Source => "sources",
            Self::Transform => "transforms",
            Self::Sink => "sinks",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Sink => "sink",
        }
    }
}

/// An error while turning an options table into a config, with the key path where it
/// happened (`routes.drivers`, `speed`) so the engine can point at the right line.
pub type OptionsError = serde_path_to_error::Error<toml::de::Error>;

/// A problem found by [`ComponentConfig::check`]: the option's key path and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionProblem {
    pub key: String,
    pub message: String,
}

impl OptionProblem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A component type, as listed by `pitwall-flow list`.
pub struct ComponentSpec {
    /// The `type = "..."` name in pipeline files.
    pub type_name: &'static str,
    pub role: Role,
    /// One line: what it does.
    pub summary: &'static str,
    /// The `when_full` of edges into this component unless the pipeline says otherwise:
    /// `drop_oldest` for live outputs, `block` for recordings and transforms.
    pub default_when_full: WhenFull,
    /// JSON Schema of the options (from the config struct's doc comments and defaults).
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Options table (without `type`, `inputs`, `when_full`) to config.
    pub parse: fn(toml::Value) -> Result<Box<dyn ComponentConfig>, OptionsError>,
}

impl fmt::Debug for ComponentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentSpec")
            .field("type_name", &self.type_name)
            .field("role", &self.role)
            .finish()
    }
}

impl ComponentSpec {
    /// Describe a component type whose options deserialize into `C`.
    ///
    /// `C` should carry `#[serde(deny_unknown_fields)]` so a misspelt option is an error, and
    /// doc comments on its fields: they become the option docs of `list` and the schema.
    pub fn new<C>(type_name: &'static str, role: Role, summary: &'static str) -> Self
    where
        C: ComponentConfig + DeserializeOwned + schemars::JsonSchema + 'static,
    {
        Self {
            type_name,
            role,
            summary,
            default_when_full: WhenFull::Block,
            schema: |generator| generator.subschema_for::<C>(),
            parse: |options| {
                serde_path_to_error::deserialize::<_, C>(options)
                    .map(|config| Box::new(config) as Box<dyn ComponentConfig>)
            },
        }
    }

    pub fn when_full(mut self, default: WhenFull) -> Self {
        self.default_when_full = default;
        self
    }
}

/// An address a component listens on, and the HTTP routes it claims there. Validation
/// rejects two components claiming the same route on the same address.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// The option that holds the address (for diagnostics), e.g. `address`.
    pub option: &'static str,
    pub address: SocketAddr,
    /// Route patterns in axum syntax (`/ws/{session_key}`); empty for non-HTTP listeners,
    /// which then claim the whole address.
    pub routes: Vec<String>,
}

impl Listener {
    /// The listener of an HTTP component whose `option` holds `address`, claiming
    /// `routes`; none while the address does not parse (the component's `check()` says so).
    pub fn http(option: &'static str, address: &str, routes: Vec<String>) -> Vec<Listener> {
        match parse_listen_address(address) {
            Ok(address) => vec![Listener {
                option,
                address,
                routes,
            }],
            Err(_) => Vec::new(),
        }
    }
}

/// A component's parsed options.
pub trait ComponentConfig: Send + Sync + fmt::Debug {
    /// Record kinds this component can emit (sources, transforms, and sinks that also
    /// produce, like a dashboard that emits commands).
    fn emits(&self) -> Kinds {
        Kinds::NONE
    }

    /// Record kinds this component does something with (transforms, sinks).
    fn accepts(&self) -> Kinds {
        Kinds::NONE
    }

    /// Addresses and routes it will listen on.
    fn listeners(&self) -> Vec<Listener> {
        Vec::new()
    }

    /// Checks beyond types (`interval_ms` must be positive, ...).
    fn check(&self) -> Vec<OptionProblem> {
        Vec::new()
    }

    /// Make the running component. Acquire what can fail here (listening sockets through
    /// [`BuildContext::http`], files that must exist) so a reload can roll back cleanly.
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Component>, ComponentError>;
}

/// What a component may use while it is built.
#[derive(Clone)]
pub struct BuildContext {
    /// The component's id in the pipeline file.
    pub id: Arc<str>,
    /// The directory of the pipeline file: relative paths in options are relative to it.
    pub base_dir: PathBuf,
    /// Shared HTTP servers, one per address.
    pub http: HttpServers,
}

impl BuildContext {
    /// Resolve a path option against the pipeline file's directory.
    pub fn resolve_path(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// Any error a component reports; the supervisor logs it and restarts the component.
pub type ComponentError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a running component talks through.
pub struct Io {
    pub id: Arc<str>,
    /// Batches from upstream; `None` for sources.
    pub input: Option<Input>,
    /// Fan-out to downstream consumers (may have none).
    pub output: Output,
    /// Fires when a source should stop producing. Transforms and sinks should instead run
    /// until `input` ends, so that queued events are drained and files are flushed.
    pub shutdown: Shutdown,
    pub metrics: Arc<ComponentMetrics>,
}

/// A running component.
///
/// `run` is called again with the same `self` after it returns an error (with backoff), so
/// state that should survive a failure can live in `self`. Returning `Ok(())` means the
/// component is finished: a replay that reached its end, or an input that closed.
#[async_trait]
pub trait Component: Send + 'static {
    async fn run(&mut self, io: &mut Io) -> Result<(), ComponentError>;
}

/// Parse a listen address option: `host:port` with an IP host, or `localhost:port`.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err(format!(
        "`{text}` is not a listen address; write it as `127.0.0.1:8000` (this machine only) or `0.0.0.0:8000` (every network interface)"
    ))
}
