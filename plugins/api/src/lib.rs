//! The small API every pitwall-flow component implements, and the helpers they share.
//!
//! Dependencies point one way: the engine (`src/`) depends on the plugin families, and every
//! family depends only on this crate. Nothing here knows about pipeline files or the graph.
//!
//! - [`record`]: the typed [`Event`]s that flow between components, and their [`RecordKind`]s.
//! - [`component`]: how a component type is described ([`ComponentSpec`]), configured
//!   ([`ComponentConfig`]) and run ([`Component`]).
//! - [`channel`]: the bounded, batch-carrying edges with their `when_full` policy.
//! - [`http`]: HTTP servers shared by every component that listens on the same address.
//! - [`telemetry`]: the car-telemetry record every game source emits, and the AC wire format.
//! - [`wire`]: the compact protobuf encoding of event batches, for chaining instances.
//! - `shared_memory` (Windows only): a game's named file mapping, read through a view.
//! - [`pacing`], [`backoff`], [`shutdown`], [`metrics`]: small shared helpers.

pub mod backoff;
pub mod channel;
pub mod component;
pub mod http;
pub mod metrics;
pub mod pacing;
pub mod record;
pub mod redact;
pub mod secret;
#[cfg(windows)]
pub mod shared_memory;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod wire;

pub use channel::{Batch, Input, Output, WhenFull};
pub use component::{
    BuildContext, Component, ComponentConfig, ComponentError, ComponentSpec, Io, Listener, Role,
};
pub use metrics::ComponentMetrics;
pub use record::{Event, Kinds, Record, RecordKind};
pub use secret::Secret;
pub use shutdown::Shutdown;
pub use telemetry::CarTelemetry;
