//! Whole-graph checks, run after every component parsed: edges that name nothing, record
//! kinds that can never match, cycles that could deadlock, listeners that collide, a graph
//! without a source or a sink; and warnings for outputs nobody consumes.

pub mod render;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use pitwall_api::http::routes_collide;
use pitwall_api::{Kinds, Listener, Role, WhenFull};

use crate::config::spans::{KeyPath, Spans};
use crate::config::Pipeline;
use crate::diagnostics::Diagnostic;
use crate::registry::{did_you_mean, Registry};

/// Check the graph of `pipeline`. `declared` holds every id written in the file, including
/// components that failed their own checks (already reported): edges to them are not
/// reported again.
pub fn validate(
    pipeline: &Pipeline,
    spans: &Spans,
    registry: &Registry,
    declared: &HashMap<String, Role>,
    orphan_inputs: &[(String, Role, Vec<crate::config::InputDecl>)],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let source = &pipeline.source;
    let components = &pipeline.components;
    let component_path = |id: &str| {
        let role = components
            .get(id)
            .map(|c| c.role)
            .or(declared.get(id).copied());
        KeyPath::root()
            .key(role.map_or("sinks", Role::table))
            .key(id)
    };

    // Every input names a component that produces something.
    let all_inputs = components
        .values()
        .map(|decl| (&decl.id, &decl.inputs))
        .chain(orphan_inputs.iter().map(|(id, _, inputs)| (id, inputs)));
    for (consumer, inputs) in all_inputs {
        for input in inputs {
            let path = component_path(consumer).join(&input.key_path);
            if let Some(upstream) = components.get(&input.from) {
                if upstream.role == Role::Sink && upstream.config.emits().is_empty() {
                    out.push(
                        Diagnostic::error(source, path.to_string(), format!("`{}` is a sink and emits nothing", input.from))
                            .at(spans.value(&path))
                            .label("cannot be an input")
                            .help("inputs name sources or transforms (or sinks that produce records, like a dashboard)"),
                    );
                }
                continue;
            }
            if declared.contains_key(&input.from) {
                continue;
            }
            let ids: Vec<&str> = declared
                .keys()
                .map(String::as_str)
                .filter(|id| id != consumer)
                .collect();
            let mut diagnostic = Diagnostic::error(
                source,
                path.to_string(),
                format!("input `{}` names no component", input.from),
            )
            .at(spans.value(&path))
            .label("no such id");
            diagnostic = match did_you_mean(&input.from, ids.iter().copied()) {
                Some(guess) => diagnostic.help(format!("did you mean `{guess}`?")),
                None if ids.is_empty() => diagnostic.help("declare a source first"),
                None => {
                    let mut sorted = ids.clone();
                    sorted.sort();
                    diagnostic.help(format!("components in this file: {}", sorted.join(", ")))
                }
            };
            out.push(diagnostic);
        }
    }

    // At least one source and one sink.
    for (role, what) in [(Role::Source, "source"), (Role::Sink, "sink")] {
        if !declared.values().any(|r| *r == role) {
            out.push(
                Diagnostic::error(source, "", format!("the pipeline has no {what}"))
                    .help(match role {
                        Role::Source => "add a [sources.<id>] table: records have to come from somewhere",
                        _ => "add a [sinks.<id>] table: records have to go somewhere (`console` prints them)",
                    }),
            );
        }
    }

    let emits = resolve_emits(pipeline);

    // Edges whose kinds can never match.
    for decl in components.values() {
        let accepts = decl.config.accepts();
        for input in &decl.inputs {
            let Some(upstream_emits) = emits.get(&input.from) else {
                continue;
            };
            if upstream_emits.intersects(&accepts) || upstream_emits.is_empty() {
                continue;
            }
            let path = component_path(&decl.id).join(&input.key_path);
            let upstream_type = &components[&input.from].type_name;
            let mut diagnostic = Diagnostic::error(
                source,
                path.to_string(),
                format!(
                    "{} `{}` ({}) accepts {}, but `{}` ({}) emits {}",
                    decl.role.name(),
                    decl.id,
                    decl.type_name,
                    accepts,
                    input.from,
                    upstream_type,
                    upstream_emits
                ),
            )
            .at(spans.value(&path))
            .label("nothing on this edge would be used");
            if let Some(bridge) = bridge_transform(registry, upstream_emits, &accepts) {
                diagnostic = diagnostic.help(format!(
                    "add a `{bridge}` transform between them: [transforms.x] type = \"{bridge}\", inputs = [\"{}\"], then inputs = [\"x\"] here",
                    input.from
                ));
            }
            out.push(diagnostic);
        }
    }

    out.extend(check_cycles(pipeline, spans, &component_path));
    out.extend(check_listeners(pipeline, spans, &component_path));

    // Outputs nobody consumes.
    let consumed: HashSet<&str> = components
        .values()
        .flat_map(|c| c.inputs.iter())
        .chain(
            orphan_inputs
                .iter()
                .flat_map(|(_, _, inputs)| inputs.iter()),
        )
        .map(|input| input.from.as_str())
        .collect();
    for decl in components.values() {
        if decl.role != Role::Sink && !consumed.contains(decl.id.as_str()) {
            let path = component_path(&decl.id);
            out.push(
                Diagnostic::warning(
                    source,
                    path.to_string(),
                    format!("nothing consumes the output of `{}`", decl.id),
                )
                .at(spans.key(&path))
                .label("unused output")
                .help(format!(
                    "name it in a sink's inputs, e.g. inputs = [\"{}\"], or remove it",
                    decl.id
                )),
            );
        }
    }
    out
}

/// What each component can emit, with `passthrough` resolved against its inputs (iterated
/// to a fixed point, so it also settles around cycles).
pub fn resolve_emits(pipeline: &Pipeline) -> HashMap<String, Kinds> {
    let mut emits: HashMap<String, Kinds> = pipeline
        .components
        .values()
        .map(|c| (c.id.clone(), concrete(c.config.emits())))
        .collect();
    loop {
        let mut changed = false;
        for decl in pipeline.components.values() {
            let declared = decl.config.emits();
            if !declared.is_passthrough() {
                continue;
            }
            let accepts = decl.config.accepts();
            let mut resolved = emits[&decl.id];
            for input in &decl.inputs {
                if let Some(upstream) = emits.get(&input.from) {
                    resolved = resolved.with(upstream.intersection(&accepts));
                }
            }
            if resolved != emits[&decl.id] {
                emits.insert(decl.id.clone(), resolved);
                changed = true;
            }
        }
        if !changed {
            return emits;
        }
    }
}

fn concrete(kinds: Kinds) -> Kinds {
    Kinds::NONE.with(Kinds::any().intersection(&kinds))
}

/// A transform type that could sit between an upstream and a downstream whose kinds do not
/// meet: it accepts some of what is emitted and emits some of what is accepted.
fn bridge_transform<'a>(
    registry: &'a Registry,
    emitted: &Kinds,
    accepted: &Kinds,
) -> Option<&'a str> {
    registry.of_role(Role::Transform).find_map(|spec| {
        let config = (spec.parse)(toml::Value::Table(Default::default())).ok()?;
        let emits = config.emits();
        (!emits.is_passthrough()
            && config.accepts().intersects(emitted)
            && emits.intersects(accepted))
        .then_some(spec.type_name)
    })
}

/// A cycle is allowed only if one of its edges does not block: otherwise, once the queues
/// around the loop are full, every component waits on the next one forever.
fn check_cycles(
    pipeline: &Pipeline,
    spans: &Spans,
    component_path: &dyn Fn(&str) -> KeyPath,
) -> Vec<Diagnostic> {
    let ids: Vec<&str> = pipeline.components.keys().map(String::as_str).collect();
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    // Edges upstream -> downstream.
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (downstream, decl) in pipeline.components.values().enumerate() {
        for input in &decl.inputs {
            if let Some(&upstream) = index.get(input.from.as_str()) {
                successors[upstream].push(downstream);
            }
        }
    }
    let mut out = Vec::new();
    for component in strongly_connected(&successors) {
        let members: HashSet<usize> = component.iter().copied().collect();
        let is_cycle = component.len() > 1 || successors[component[0]].contains(&component[0]);
        if !is_cycle {
            continue;
        }
        let mut blocking_edge = None;
        let mut any_non_blocking = false;
        for &member in &component {
            let decl = &pipeline.components[member];
            for input in &decl.inputs {
                if index
                    .get(input.from.as_str())
                    .is_some_and(|u| members.contains(u))
                {
                    if input.when_full == WhenFull::Block {
                        blocking_edge.get_or_insert((decl.id.clone(), input.clone()));
                    } else {
                        any_non_blocking = true;
                    }
                }
            }
        }
        if any_non_blocking {
            continue;
        }
        let mut names: Vec<&str> = component.iter().map(|&i| ids[i]).collect();
        names.sort();
        let (id, input) = blocking_edge.expect("a cycle has edges");
        let path = component_path(&id).join(&input.key_path);
        out.push(
            Diagnostic::error(
                &pipeline.source,
                path.to_string(),
                format!("the loop {} can deadlock: every edge in it blocks when full", names.join(" -> ")),
            )
            .at(spans.value(&path))
            .label("this edge closes the loop")
            .help(format!(
                "make one edge of the loop drop instead of block, e.g. inputs = [{{ from = \"{}\", when_full = \"drop_oldest\" }}]",
                input.from
            )),
        );
    }
    out
}

/// Tarjan's strongly connected components, iterative (pipelines are small, but recursion
/// depth should not depend on user input).
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = successors.len();
    let mut index_of = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut components = Vec::new();
    for start in 0..n {
        if index_of[start] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            if *child == 0 && index_of[node] == usize::MAX {
                index_of[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&next) = successors[node].get(*child) {
                *child += 1;
                if index_of[next] == usize::MAX {
                    work.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index_of[next]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index_of[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// Two listeners collide when their addresses overlap (same port, and the same IP or one
/// of them every interface) and they claim the same route, or one claims the whole port.
fn check_listeners(
    pipeline: &Pipeline,
    spans: &Spans,
    component_path: &dyn Fn(&str) -> KeyPath,
) -> Vec<Diagnostic> {
    let mut claims: Vec<(String, KeyPath, Listener)> = Vec::new();
    for decl in pipeline.components.values() {
        for listener in decl.config.listeners() {
            claims.push((
                decl.id.clone(),
                component_path(&decl.id).key(listener.option),
                listener,
            ));
        }
    }
    if let Some(admin) = &pipeline.admin {
        if let Ok(address) = pitwall_api::component::parse_listen_address(&admin.address) {
            claims.push((
                "admin".to_string(),
                KeyPath::root().key("admin").key("address"),
                Listener {
                    option: "address",
                    address,
                    routes: vec!["/health".into(), "/metrics".into()],
                },
            ));
        }
    }
    let mut out = Vec::new();
    for (i, (id_a, _, a)) in claims.iter().enumerate() {
        for (id_b, path_b, b) in &claims[i + 1..] {
            if !addresses_overlap(a.address, b.address) || a.address.port() == 0 {
                continue;
            }
            let clash = if a.routes.is_empty() || b.routes.is_empty() {
                Some("the whole port".to_string())
            } else {
                a.routes.iter().find_map(|ra| {
                    b.routes
                        .iter()
                        .find(|rb| routes_collide(ra, rb))
                        .map(|rb| format!("route `{rb}` (and `{ra}`)"))
                })
            };
            if let Some(clash) = clash {
                out.push(
                    Diagnostic::error(
                        &pipeline.source,
                        path_b.to_string(),
                        format!("`{id_b}` and `{id_a}` both claim {clash} on {}", b.address),
                    )
                    .at(spans.value(path_b))
                    .label("address already claimed")
                    .help("give one of them another port, or another address"),
                );
            }
        }
    }
    out
}

fn addresses_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
