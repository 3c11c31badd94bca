//! Pipeline files: TOML text to a checked [`Pipeline`], or every problem in it.
//!
//! Parsing happens in two phases so that every error keeps its line and column (serde's
//! `tag`/`flatten` would lose them): first each component is read as a plain table and its
//! `type` looked up in the [`Registry`] by hand; then its options table is deserialized into
//! that type's config struct, which rejects unknown keys. Errors carry key paths, which
//! [`spans::Spans`] turns into file positions. Whole-graph checks then run in [`crate::graph`].
//!
//! ```toml
//! [sources.f1]
//! type = "openf1"
//! session_key = 9999
//!
//! [sinks.screen]
//! type = "cardputer"
//! inputs = ["f1", { from = "frames", when_full = "drop_oldest" }]
//! ```

pub mod interpolate;
pub mod spans;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use pitwall_api::{ComponentConfig, Role, WhenFull};
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, SourceFile};
use crate::registry::{did_you_mean, Registry};
use spans::{KeyPath, Spans};

/// A pipeline file that parsed and validated.
pub struct Pipeline {
    pub path: PathBuf,
    /// Relative paths in options resolve against this (the file's directory).
    pub base_dir: PathBuf,
    pub source: SourceFile,
    /// Components in file order.
    pub components: IndexMap<String, ComponentDecl>,
    pub admin: Option<AdminSettings>,
    pub runtime: RuntimeSettings,
    /// Problems that do not stop the pipeline (outputs nobody consumes, ...).
    pub warnings: Vec<Diagnostic>,
}

/// One `[sources.x]`, `[transforms.x]` or `[sinks.x]` table.
pub struct ComponentDecl {
    pub id: String,
    pub role: Role,
    pub type_name: String,
    pub inputs: Vec<InputDecl>,
    /// The options after interpolation (without `type`, `inputs`, `when_full`): two
    /// declarations with equal type and options are the same component, for reload.
    pub options: toml::Value,
    pub config: Arc<dyn ComponentConfig>,
}

/// One edge into a component.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub from: String,
    pub when_full: WhenFull,
    /// Where it was written, relative to its component (`inputs[1]`).
    pub key_path: KeyPath,
}

/// `[admin]`: the HTTP endpoint with `/health` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Where `/health` and `/metrics` are served; may be shared with other HTTP components.
    #[serde(default = "default_admin_address")]
    pub address: String,
    /// Set to false to keep the table but turn the endpoint off.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_admin_address() -> String {
    "127.0.0.1:8686".to_string()
}

fn yes() -> bool {
    true
}

/// `[runtime]`: how the graph runs.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Capacity of each component's input queue, in batches.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// How long sources, transforms and sinks get to stop, drain and flush on Ctrl-C/SIGTERM.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Quiet time after a file change before reloading (editors write in several steps).
    #[serde(default = "default_reload_debounce_ms")]
    pub reload_debounce_ms: u64,
    /// Exit once every source has finished and everything downstream has drained
    /// (conversions). Otherwise sinks keep serving after a replay ends.
    #[serde(default)]
    pub exit_when_done: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            queue_batches: default_queue_batches(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            reload_debounce_ms: default_reload_debounce_ms(),
            exit_when_done: false,
        }
    }
}

fn default_queue_batches() -> usize {
    64
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}
fn default_reload_debounce_ms() -> u64 {
    200
}

/// Load and check the pipeline at `path`, reading `${VAR}`s from the process environment.
pub fn load(path: &Path, registry: &Registry) -> Result<Pipeline, Vec<Diagnostic>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let source = SourceFile::new(path, String::new());
            return Err(vec![Diagnostic::error(
                &source,
                "",
                format!("cannot read the pipeline file: {error}"),
            )]);
        }
    };
    load_text(path, text, registry, &|name| std::env::var(name).ok())
}

/// Check pipeline text as if it were the file at `path`. `env` looks up `${VAR}`s.
pub fn load_text(
    path: &Path,
    text: String,
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let source = SourceFile::new(path, text);
    let mut loader = Loader {
        source: source.clone(),
        spans: Spans::parse(&source.text),
        registry,
        env,
        diagnostics: Vec::new(),
        orphan_inputs: Vec::new(),
    };
    let root: toml::Table = match toml::from_str(&source.text) {
        Ok(root) => root,
        Err(error) => {
            return Err(vec![Diagnostic::error(
                &source,
                "",
                error.message().to_string(),
            )
            .at(error.span())
            .label("here")
            .help("the file is not valid TOML; fix this first")]);
        }
    };
    let base_dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));

    let mut components = IndexMap::new();
    let mut declared = std::collections::HashMap::new();
    let mut admin = None;
    let mut runtime = RuntimeSettings::default();
    for (key, value) in &root {
        let path = KeyPath::root().key(key);
        match key.as_str() {
            "sources" | "transforms" | "sinks" => {
                let role = match key.as_str() {
                    "sources" => Role::Source,
                    "transforms" => Role::Transform,
                    _ => Role::Sink,
                };
                let Some(table) = value.as_table() else {
                    loader.error_at_value(&path, format!("`{key}` must be a table of components"));
                    continue;
                };
                for (id, body) in table {
                    declared.entry(id.clone()).or_insert(role);
                    if let Some(decl) = loader.component(role, id, body) {
                        if let Some(previous) = components.get(id) {
                            let previous: &ComponentDecl = previous;
                            loader.push(
                                Diagnostic::error(
                                    &loader.source,
                                    format!("{}.{id}", role.table()),
                                    format!(
                                        "duplicate id `{id}`: it is already used by a {} ([{}.{id}])",
                                        previous.role.name(),
                                        previous.role.table()
                                    ),
                                )
                                .at(loader.spans.key(&path.key(id)))
                                .label("used twice")
                                .help("ids name components in `inputs`, so each must be unique across sources, transforms and sinks"),
                            );
                        } else {
                            components.insert(id.clone(), decl);
                        }
                    }
                }
            }
            "admin" => admin = loader.settings::<AdminSettings>(&path, value),
            "runtime" => {
                if let Some(settings) = loader.settings::<RuntimeSettings>(&path, value) {
                    if settings.shutdown_timeout_ms == 0 {
                        // Zero would abort every sink mid-flush: a conversion cut short.
                        loader.error_at_value(
                            &path.key("shutdown_timeout_ms"),
                            "`shutdown_timeout_ms` must be at least 1: with 0 nothing could drain or flush on stop (the default is 10000)".into(),
                        );
                    }
                    runtime = settings;
                }
            }
            other => {
                let mut diagnostic = Diagnostic::error(
                    &loader.source,
                    other,
                    format!("unknown top-level table `{other}`"),
                )
                .at(loader.spans.key(&path))
                .label("not a pipeline section");
                let known = ["sources", "transforms", "sinks", "admin", "runtime"];
                diagnostic = match did_you_mean(other, known) {
                    Some(guess) => diagnostic.help(format!("did you mean `{guess}`?")),
                    None => diagnostic.help("a pipeline has [sources.*], [transforms.*], [sinks.*], and optional [admin] and [runtime]"),
                };
                loader.push(diagnostic);
            }
        }
    }

    let mut pipeline = Pipeline {
        path: path.to_path_buf(),
        base_dir,
        source: source.clone(),
        components,
        admin: admin.filter(|a: &AdminSettings| a.enabled),
        runtime,
        warnings: Vec::new(),
    };
    let graph_diagnostics = crate::graph::validate(
        &pipeline,
        &loader.spans,
        registry,
        &declared,
        &loader.orphan_inputs,
    );
    loader.diagnostics.extend(graph_diagnostics);
    if loader.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(loader.diagnostics);
    }
    pipeline.warnings = loader.diagnostics;
    Ok(pipeline)
}

struct Loader<'a> {
    source: SourceFile,
    spans: Spans,
    registry: &'a Registry,
    env: &'a dyn Fn(&str) -> Option<String>,
    diagnostics: Vec<Diagnostic>,
    /// Inputs of components that failed their own checks, for the graph checks.
    orphan_inputs: Vec<(String, Role, Vec<InputDecl>)>,
}

impl Loader<'_> {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn error_at_value(&mut self, path: &KeyPath, message: String) {
        let span = self.spans.value(path);
        self.push(Diagnostic::error(&self.source, path.to_string(), message).at(span));
    }

    /// One component table; `None` (with diagnostics recorded) when it cannot be used.
    fn component(&mut self, role: Role, id: &str, body: &toml::Value) -> Option<ComponentDecl> {
        let path = KeyPath::root().key(role.table()).key(id);
        let Some(table) = body.as_table() else {
            self.error_at_value(
                &path,
                format!(
                    "a {} must be a table, e.g. [{}.{id}] with a `type`",
                    role.name(),
                    role.table()
                ),
            );
            return None;
        };
        let mut ok = true;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.push(
                Diagnostic::error(
                    &self.source,
                    path.to_string(),
                    format!("`{id}` is not a valid component id"),
                )
                .at(self.spans.key(&path))
                .help("use letters, digits, `_` and `-`"),
            );
            ok = false;
        }

        // Phase 1: `type`, by hand, against the registry.
        let type_path = path.key("type");
        let type_name = match table.get("type") {
            Some(toml::Value::String(name)) => name.clone(),
            Some(_) => {
                self.error_at_value(&type_path, "`type` must be a string".to_string());
                return None;
            }
            None => {
                self.push(
                    Diagnostic::error(&self.source, path.to_string(), "missing `type`")
                        .at(self.spans.key(&path))
                        .label("this component has no type")
                        .help(format!(
                            "add `type = \"...\"`; {} types: {}",
                            role.name(),
                            self.type_names(role)
                        )),
                );
                return None;
            }
        };
        let Some(spec) = self.registry.get(role, &type_name) else {
            let mut diagnostic = Diagnostic::error(
                &self.source,
                type_path.to_string(),
                format!("unknown {} type `{type_name}`", role.name()),
            )
            .at(self.spans.value(&type_path))
            .label("no such type");
            let elsewhere = self.registry.roles_of(&type_name);
            let names: Vec<&str> = self.registry.of_role(role).map(|s| s.type_name).collect();
            diagnostic = if let Some(other) = elsewhere.first() {
                diagnostic.help(format!(
                    "`{type_name}` is a {}: declare it as [{}.{id}]",
                    other.name(),
                    other.table()
                ))
            } else if let Some(guess) = did_you_mean(&type_name, names.iter().copied()) {
                diagnostic.help(format!("did you mean `{guess}`?"))
            } else {
                diagnostic.help(format!("{} types: {}", role.name(), self.type_names(role)))
            };
            self.push(diagnostic);
            return None;
        };

        // Edges: `inputs` and the component-wide `when_full`.
        let default_when_full = match table.get("when_full") {
            None => spec.default_when_full,
            Some(value) => match self.when_full(&path.key("when_full"), value) {
                Some(policy) => policy,
                None => {
                    ok = false;
                    spec.default_when_full
                }
            },
        };
        let inputs = match (role, table.get("inputs")) {
            (Role::Source, None) => Vec::new(),
            (Role::Source, Some(_)) => {
                self.push(
                    Diagnostic::error(&self.source, path.key("inputs").to_string(), "a source has no inputs")
                        .at(self.spans.key(&path.key("inputs")))
                        .help("sources produce records; to process another component's output, declare a transform"),
                );
                ok = false;
                Vec::new()
            }
            (_, None) => {
                self.push(
                    Diagnostic::error(&self.source, path.to_string(), "missing `inputs`")
                        .at(self.spans.key(&path))
                        .label(format!("this {} reads nothing", role.name()))
                        .help("add `inputs = [\"<id of a source or transform>\"]`"),
                );
                ok = false;
                Vec::new()
            }
            (_, Some(value)) => {
                let (inputs, all_valid) =
                    self.inputs(&path.key("inputs"), value, default_when_full);
                ok &= all_valid;
                inputs
            }
        };

        // Phase 2: the options, into the type's own config struct.
        let Some((options, config)) = self.options(&path, spec, table) else {
            // Still check where its inputs point: every problem is reported at once.
            self.orphan_inputs.push((id.to_string(), role, inputs));
            return None;
        };
        if !ok {
            self.orphan_inputs.push((id.to_string(), role, inputs));
            return None;
        }
        Some(ComponentDecl {
            id: id.to_string(),
            role,
            type_name,
            inputs,
            options,
            config,
        })
    }

    /// Interpolate and deserialize a component's options, then run its own checks.
    fn options(
        &mut self,
        path: &KeyPath,
        spec: &pitwall_api::ComponentSpec,
        table: &toml::Table,
    ) -> Option<(toml::Value, Arc<dyn ComponentConfig>)> {
        let mut options = table.clone();
        for engine_key in ["type", "inputs", "when_full"] {
            options.remove(engine_key);
        }
        let mut options = toml::Value::Table(options);
        if !self.interpolate(path, &mut options) {
            return None;
        }
        let config: Arc<dyn ComponentConfig> = match (spec.parse)(options.clone()) {
            Ok(config) => Arc::from(config),
            Err(error) => {
                self.option_error(path, spec, &error);
                return None;
            }
        };
        let problems = config.check();
        for problem in &problems {
            let option_path = path.key(&problem.key);
            self.push(
                Diagnostic::error(
                    &self.source,
                    option_path.to_string(),
                    problem.message.clone(),
                )
                .at(self.spans.value(&option_path)),
            );
        }
        problems.is_empty().then_some((options, config))
    }

    fn type_names(&self, role: Role) -> String {
        let names: Vec<String> = self
            .registry
            .of_role(role)
            .map(|spec| format!("`{}`", spec.type_name))
            .collect();
        names.join(", ")
    }

    fn when_full(&mut self, path: &KeyPath, value: &toml::Value) -> Option<WhenFull> {
        let policy = value.as_str().and_then(|text| match text {
            "block" => Some(WhenFull::Block),
            "drop_oldest" => Some(WhenFull::DropOldest),
            "drop_newest" => Some(WhenFull::DropNewest),
            _ => None,
        });
        if policy.is_none() {
            self.push(
                Diagnostic::error(&self.source, path.to_string(), format!("`when_full` cannot be {value}"))
                    .at(self.spans.value(path))
                    .help("use \"block\" (lose nothing), \"drop_oldest\" (live displays) or \"drop_newest\""),
            );
        }
        policy
    }

    /// The inputs that are well formed, and whether all were.
    fn inputs(
        &mut self,
        path: &KeyPath,
        value: &toml::Value,
        default: WhenFull,
    ) -> (Vec<InputDecl>, bool) {
        let Some(items) = value.as_array() else {
            self.error_at_value(
                path,
                "`inputs` must be a list of component ids, e.g. [\"f1\"]".to_string(),
            );
            return (Vec::new(), false);
        };
        let mut inputs = Vec::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = path.index(index);
            match item {
                toml::Value::String(from) => inputs.push(InputDecl {
                    from: from.clone(),
                    when_full: default,
                    key_path: KeyPath::root().key("inputs").index(index),
                }),
                toml::Value::Table(table) => {
                    let from = table.get("from").and_then(|v| v.as_str());
                    let policy = match table.get("when_full") {
                        Some(value) => self.when_full(&item_path.key("when_full"), value),
                        None => Some(default),
                    };
                    let unknown: Vec<&String> = table
                        .keys()
                        .filter(|k| *k != "from" && *k != "when_full")
                        .collect();
                    if let Some(key) = unknown.first() {
                        self.push(
                            Diagnostic::error(&self.source, item_path.to_string(), format!("unknown key `{key}` in an input"))
                                .at(self.spans.value(&item_path))
                                .help("an input is \"id\" or { from = \"id\", when_full = \"drop_oldest\" }"),
                        );
                        ok = false;
                    }
                    match (from, policy) {
                        (Some(from), Some(when_full)) => inputs.push(InputDecl {
                            from: from.to_string(),
                            when_full,
                            key_path: KeyPath::root().key("inputs").index(index),
                        }),
                        (None, _) => {
                            self.push(
                                Diagnostic::error(
                                    &self.source,
                                    item_path.to_string(),
                                    "this input has no `from`",
                                )
                                .at(self.spans.value(&item_path))
                                .help("write { from = \"id\", when_full = \"drop_oldest\" }"),
                            );
                            ok = false;
                        }
                        (Some(from), None) => {
                            // Reported already; keep the edge so the graph checks know it.
                            inputs.push(InputDecl {
                                from: from.to_string(),
                                when_full: default,
                                key_path: KeyPath::root().key("inputs").index(index),
                            });
                            ok = false;
                        }
                    }
                }
                _ => {
                    self.error_at_value(
                        &item_path,
                        "an input is a component id string".to_string(),
                    );
                    ok = false;
                }
            }
        }
        (inputs, ok)
    }

    /// Apply `${VAR}` interpolation to every string under `value`; false if any failed.
    fn interpolate(&mut self, path: &KeyPath, value: &mut toml::Value) -> bool {
        match value {
            toml::Value::String(text) => match interpolate::interpolate(text, self.env) {
                Ok(done) => {
                    *text = done;
                    true
                }
                Err(variable) => {
                    self.push(
                        Diagnostic::error(
                            &self.source,
                            path.to_string(),
                            format!("environment variable `{variable}` is not set"),
                        )
                        .at(self.spans.value(path))
                        .label(format!("needs ${{{variable}}}"))
                        .help(format!("set {variable} before starting, or give a default: ${{{variable}:-value}}")),
                    );
                    false
                }
            },
            toml::Value::Array(items) => {
                let mut ok = true;
                for (index, item) in items.iter_mut().enumerate() {
                    ok &= self.interpolate(&path.index(index), item);
                }
                ok
            }
            toml::Value::Table(table) => {
                let mut ok = true;
                for (key, item) in table.iter_mut() {
                    ok &= self.interpolate(&path.key(key), item);
                }
                ok
            }
            _ => true,
        }
    }

    fn option_error(
        &mut self,
        component: &KeyPath,
        spec: &pitwall_api::ComponentSpec,
        error: &pitwall_api::component::OptionsError,
    ) {
        let path = component.join_serde(error.path());
        let message = error.inner().message().to_string();
        let known = crate::schema::option_names(spec);
        let diagnostic = if let Some(name) = between(&message, "unknown field `", "`") {
            let mut d = Diagnostic::error(
                &self.source,
                path.to_string(),
                format!(
                    "unknown option `{name}` for {} `{}`",
                    spec.role.name(),
                    spec.type_name
                ),
            )
            .at(self.spans.key(&path))
            .label("not an option of this type");
            let guess = did_you_mean(name, known.iter().map(String::as_str));
            d = match guess {
                Some(guess) => d.help(format!("did you mean `{guess}`?")),
                None => d.help(format!("options of `{}`: {}", spec.type_name, list(&known))),
            };
            d
        } else if let Some(name) = between(&message, "missing field `", "`") {
            let option_path = path.key(name);
            Diagnostic::error(
                &self.source,
                option_path.to_string(),
                format!(
                    "missing required option `{name}` for {} `{}`",
                    spec.role.name(),
                    spec.type_name
                ),
            )
            .at(self.spans.key(&path))
            .label(format!("add `{name} = ...` to this table"))
            .help(format!(
                "run `pitwall-flow list {}` to see every option",
                spec.type_name
            ))
        } else {
            Diagnostic::error(&self.source, path.to_string(), plain_types(&message))
                .at(self.spans.value(&path))
                .label("wrong type or value")
                .help(format!(
                    "run `pitwall-flow list {}` to see every option",
                    spec.type_name
                ))
        };
        self.push(diagnostic);
    }

    fn settings<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &KeyPath,
        value: &toml::Value,
    ) -> Option<T> {
        let mut value = value.clone();
        if !self.interpolate(path, &mut value) {
            return None;
        }
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(settings) => Some(settings),
            Err(error) => {
                let at = path.join_serde(error.path());
                let message = error.inner().message().to_string();
                let span = if message.starts_with("unknown field") {
                    self.spans.key(&at)
                } else {
                    self.spans.value(&at)
                };
                self.push(Diagnostic::error(&self.source, at.to_string(), message).at(span));
                None
            }
        }
    }
}

/// serde names Rust types (`expected f64`); users write TOML.
fn plain_types(message: &str) -> String {
    let mut text = message.to_string();
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(rest) = text.strip_suffix(rust).map(str::to_string) {
            text = format!("{rest}{plain}");
        }
    }
    text
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let rest = text.split_once(start)?.1;
    Some(rest.split_once(end)?.0)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
