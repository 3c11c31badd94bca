//! The JSON Schema of pipeline files (for editors: taplo, VS Code Even Better TOML) and the
//! option reference of `pitwall-flow list`, both generated from the config structs in the
//! registry, so the documentation cannot drift from what the loader accepts.

use std::fmt::Write;

use pitwall_api::{ComponentSpec, Role};
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::config::{AdminSettings, RuntimeSettings};
use crate::registry::Registry;

/// The options object schema of one component type, with `$ref`s resolved against the
/// generator's definitions.
fn options_schema(spec: &ComponentSpec, generator: &mut SchemaGenerator) -> Map<String, Value> {
    let schema = (spec.schema)(generator);
    let value = schema.as_value().clone();
    let resolved = match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            generator
                .definitions()
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        }
        None => value,
    };
    resolved.as_object().cloned().unwrap_or_default()
}

/// Names of the options of a component type.
pub fn option_names(spec: &ComponentSpec) -> Vec<String> {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let schema = options_schema(spec, &mut generator);
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

/// The JSON Schema of a pipeline file.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut defs = Map::new();
    let admin = generator.subschema_for::<AdminSettings>();
    let runtime = generator.subschema_for::<RuntimeSettings>();

    defs.insert(
        "when_full".into(),
        json!({
            "description": "What an edge does when its consumer's queue is full.",
            "enum": ["block", "drop_oldest", "drop_newest"]
        }),
    );
    defs.insert(
        "inputs".into(),
        json!({
            "description": "Ids of the components this one reads from.",
            "type": "array",
            "items": {
                "anyOf": [
                    { "type": "string" },
                    {
                        "type": "object",
                        "properties": {
                            "from": { "type": "string" },
                            "when_full": { "$ref": "#/$defs/when_full" }
                        },
                        "required": ["from"],
                        "additionalProperties": false
                    }
                ]
            }
        }),
    );

    let mut tables = Map::new();
    for role in [Role::Source, Role::Transform, Role::Sink] {
        let mut branches = Vec::new();
        let mut names = Vec::new();
        for spec in registry.of_role(role) {
            let mut options = options_schema(spec, &mut generator);
            let properties = options
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("properties is an object");
            properties.insert(
                "type".into(),
                json!({ "const": spec.type_name, "description": spec.summary }),
            );
            if role != Role::Source {
                properties.insert("inputs".into(), json!({ "$ref": "#/$defs/inputs" }));
                properties.insert("when_full".into(), json!({ "$ref": "#/$defs/when_full" }));
            }
            let mut required: Vec<Value> = options
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            required.push(json!("type"));
            if role != Role::Source {
                required.push(json!("inputs"));
            }
            options.insert("required".into(), Value::Array(required));
            options.insert("additionalProperties".into(), json!(false));
            options.remove("title");
            let name = format!("{}.{}", role.name(), spec.type_name);
            defs.insert(name.clone(), Value::Object(options));
            branches.push(json!({
                "if": { "properties": { "type": { "const": spec.type_name } }, "required": ["type"] },
                "then": { "$ref": format!("#/$defs/{name}") }
            }));
            names.push(json!(spec.type_name));
        }
        let component = json!({
            "type": "object",
            "required": ["type"],
            "properties": { "type": { "enum": names } },
            "allOf": branches
        });
        defs.insert(role.name().into(), component);
        tables.insert(
            role.table().into(),
            json!({
                "type": "object",
                "description": format!("{}s, by id", role.name()),
                "additionalProperties": { "$ref": format!("#/$defs/{}", role.name()) }
            }),
        );
    }
    tables.insert("admin".into(), admin.as_value().clone());
    tables.insert("runtime".into(), runtime.as_value().clone());
    for (name, definition) in generator.definitions() {
        defs.entry(name.clone())
            .or_insert_with(|| definition.clone());
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/pitwall-flow/pitwall-flow/schemas/pipeline.schema.json",
        "title": "pitwall-flow pipeline",
        "description": "A dataflow graph of sources, transforms and sinks. Generated by `pitwall-flow schema`.",
        "type": "object",
        "additionalProperties": false,
        "properties": tables,
        "$defs": defs
    })
}

/// One option, for `list`.
pub struct OptionDoc {
    pub name: String,
    pub kind: String,
    pub default: Option<String>,
    pub required: bool,
    pub description: String,
}

pub fn option_docs(spec: &ComponentSpec) -> Vec<OptionDoc> {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let schema = options_schema(spec, &mut generator);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| OptionDoc {
            name: name.clone(),
            kind: type_name(property, generator.definitions()),
            default: property.get("default").map(|d| d.to_string()),
            required: required.contains(&name.as_str()),
            description: property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .replace('\n', " "),
        })
        .collect()
}

fn type_name(property: &Value, definitions: &Map<String, Value>) -> String {
    if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return match definitions.get(name) {
            Some(definition) => type_name(definition, definitions),
            None => name.to_string(),
        };
    }
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(options) = property
        .get("anyOf")
        .or_else(|| property.get("oneOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<String> = options
            .iter()
            .map(|option| type_name(option, definitions))
            .filter(|t| t != "null")
            .collect();
        return parts.join(" | ");
    }
    if let Some(constant) = property.get("const") {
        return constant.to_string();
    }
    match property.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = property
                .get("items")
                .map(|i| type_name(i, definitions))
                .unwrap_or_default();
            format!("[{items}]")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(|t| match (t, property.get("items")) {
                ("array", Some(items)) => format!("[{}]", type_name(items, definitions)),
                _ => t.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_string(),
    }
}

/// The text of `pitwall-flow list [TYPE]`.
pub fn render_list(registry: &Registry, only: Option<&str>) -> String {
    let mut out = String::new();
    for role in [Role::Source, Role::Transform, Role::Sink] {
        let specs: Vec<&ComponentSpec> = registry
            .of_role(role)
            .filter(|spec| only.is_none_or(|name| name == spec.type_name))
            .collect();
        if specs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}S", role.name().to_uppercase());
        for spec in specs {
            let _ = writeln!(out, "\n  {}  ({})", spec.type_name, spec.summary);
            let _ = writeln!(
                out,
                "    when_full default: {}",
                spec.default_when_full.name()
            );
            let docs = option_docs(spec);
            if docs.is_empty() {
                let _ = writeln!(out, "    (no options)");
            }
            for doc in docs {
                let default = match (&doc.default, doc.required) {
                    (_, true) => " (required)".to_string(),
                    (Some(default), _) if default != "null" => format!(" = {default}"),
                    _ => " (optional)".to_string(),
                };
                let _ = writeln!(out, "    {}: {}{}", doc.name, doc.kind, default);
                if !doc.description.is_empty() {
                    let _ = writeln!(out, "        {}", doc.description);
                }
            }
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("no component type of that name; run `pitwall-flow list` for all\n");
    }
    out
}

/// The component reference of the README: `pitwall-flow list --markdown`.
pub fn render_markdown(registry: &Registry) -> String {
    let mut out = String::new();
    for role in [Role::Source, Role::Transform, Role::Sink] {
        let _ = writeln!(out, "### {}s\n", capitalised(role.name()));
        for spec in registry.of_role(role) {
            let _ = writeln!(out, "#### `{}`\n", spec.type_name);
            if role == Role::Source {
                let _ = writeln!(out, "{}.\n", spec.summary);
            } else {
                let _ = writeln!(
                    out,
                    "{}. Inputs default to `when_full = \"{}\"`.\n",
                    spec.summary,
                    spec.default_when_full.name()
                );
            }
            let docs = option_docs(spec);
            if docs.is_empty() {
                out.push_str("No options.\n\n");
                continue;
            }
            out.push_str("| option | type | default | what it does |\n|---|---|---|---|\n");
            for doc in docs {
                let default = match (&doc.default, doc.required) {
                    (_, true) => "required".to_string(),
                    (Some(d), _) if d != "null" => format!("`{d}`"),
                    _ => "optional".to_string(),
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    doc.name,
                    doc.kind.replace('|', "\\|"),
                    default.replace('|', "\\|"),
                    doc.description.replace('|', "\\|")
                );
            }
            out.push('\n');
        }
    }
    out
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
