//! The pipeline as a picture: Mermaid (renders on GitHub) or Graphviz DOT.

use std::fmt::Write;

use pitwall_api::{Role, WhenFull};

use crate::config::Pipeline;
use crate::graph::resolve_emits;

/// A Mermaid flowchart: sources as stadiums, transforms as boxes, sinks as subroutines;
/// edges labelled with the record kinds that can flow on them.
pub fn mermaid(pipeline: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    for decl in pipeline.components.values() {
        let label = format!(
            "{}<br/><small>{} {}</small>",
            decl.id,
            decl.role.name(),
            decl.type_name
        );
        let node = match decl.role {
            Role::Source => format!("([\"{label}\"])"),
            Role::Transform => format!("[\"{label}\"]"),
            Role::Sink => format!("[[\"{label}\"]]"),
        };
        let _ = writeln!(out, "    {}{node}", node_id(&decl.id));
    }
    for (from, to, kinds, when_full) in edges(pipeline) {
        let arrow = if when_full == WhenFull::Block {
            "-->"
        } else {
            "-.->"
        };
        let _ = writeln!(
            out,
            "    {} {arrow}|\"{kinds}\"| {}",
            node_id(&from),
            node_id(&to)
        );
    }
    out
}

/// Graphviz DOT, for `dot -Tsvg`.
pub fn dot(pipeline: &Pipeline) -> String {
    let mut out =
        String::from("digraph pipeline {\n    rankdir=LR;\n    node [fontname=\"Helvetica\"];\n");
    for decl in pipeline.components.values() {
        let shape = match decl.role {
            Role::Source => "ellipse",
            Role::Transform => "box",
            Role::Sink => "box3d",
        };
        let _ = writeln!(
            out,
            "    \"{}\" [shape={shape}, label=\"{}\\n{} {}\"];",
            decl.id,
            decl.id,
            decl.role.name(),
            decl.type_name
        );
    }
    for (from, to, kinds, when_full) in edges(pipeline) {
        let style = if when_full == WhenFull::Block {
            "solid"
        } else {
            "dashed"
        };
        let _ = writeln!(
            out,
            "    \"{from}\" -> \"{to}\" [label=\"{kinds}\", style={style}];"
        );
    }
    out.push_str("}\n");
    out
}

/// (from, to, kinds that can flow, policy) for every edge.
fn edges(pipeline: &Pipeline) -> Vec<(String, String, String, WhenFull)> {
    let emits = resolve_emits(pipeline);
    let mut edges = Vec::new();
    for decl in pipeline.components.values() {
        let accepts = decl.config.accepts();
        for input in &decl.inputs {
            let kinds = emits
                .get(&input.from)
                .map(|e| e.intersection(&accepts).to_string())
                .unwrap_or_default();
            edges.push((input.from.clone(), decl.id.clone(), kinds, input.when_full));
        }
    }
    edges
}

fn node_id(id: &str) -> String {
    // Mermaid ids cannot contain `-`; component ids can.
    id.replace('-', "_")
}
