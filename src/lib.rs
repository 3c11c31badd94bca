//! The pitwall-flow engine: loads a pipeline file, checks it, runs it as a graph of tasks,
//! and changes the running graph when the file changes.
//!
//! - [`registry`]: every component type the binary knows, from the plugin families.
//! - [`config`]: pipeline files to checked [`config::Pipeline`]s, keeping every location.
//! - [`diagnostics`]: problems rendered like a compiler's, with file, line and column.
//! - [`graph`]: whole-graph checks (edges, kinds, cycles, listeners) and pictures of it.
//! - [`runtime`]: the running topology: supervision, reload, shutdown, the admin endpoint.
//! - [`schema`]: the JSON Schema of pipeline files and the `list` reference.
//! - [`cli`]: the `pitwall-flow` command line.
//! - [`fuzzing`]: what each `cargo fuzz` target runs, shared with the regression test.
//! - [`tools`]: `inspect` and `plot`, for looking at Parquet recordings.

pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod fuzzing;
pub mod graph;
pub mod logging;
pub mod registry;
pub mod runtime;
pub mod schema;
pub mod tools;
