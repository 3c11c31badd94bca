//! What changed between two versions of a pipeline, by component id.
//!
//! Pure and small on purpose: reload correctness starts with knowing exactly which
//! components to keep, rebuild, stop and start.

use crate::config::Pipeline;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the new file only: build and start.
    pub added: Vec<String>,
    /// In the old file only: drain and stop.
    pub removed: Vec<String>,
    /// Same id, different role, type or options: build the new one, drain the old one,
    /// start the new one.
    pub changed: Vec<String>,
    /// Same id, role, type and options: keeps running with its state and clients. Its
    /// inputs may still have changed, which is only rewiring.
    pub unchanged: Vec<String>,
}

impl Diff {
    pub fn between(old: &Pipeline, new: &Pipeline) -> Self {
        let mut diff = Diff::default();
        for (id, new_decl) in &new.components {
            match old.components.get(id) {
                None => diff.added.push(id.clone()),
                Some(old_decl)
                    if old_decl.role == new_decl.role
                        && old_decl.type_name == new_decl.type_name
                        && old_decl.options == new_decl.options =>
                {
                    diff.unchanged.push(id.clone())
                }
                Some(_) => diff.changed.push(id.clone()),
            }
        }
        for id in old.components.keys() {
            if !new.components.contains_key(id) {
                diff.removed.push(id.clone());
            }
        }
        diff
    }

    /// Components to build before anything is stopped.
    pub fn to_build(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.changed)
    }

    /// Running components to drain and stop.
    pub fn to_stop(&self) -> impl Iterator<Item = &String> {
        self.removed.iter().chain(&self.changed)
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `+2 added, -1 removed, ~1 changed, 3 unchanged` for logs.
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} removed, {} changed, {} unchanged",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.unchanged.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_text;
    use crate::registry::Registry;

    fn pipeline(text: &str) -> Pipeline {
        load_text(
            Path::new("p.toml"),
            text.to_string(),
            &Registry::builtin(),
            &|_| None,
        )
        .unwrap_or_else(|d| panic!("{}", crate::diagnostics::render_all(&d, false)))
    }

    const BASE: &str = r#"
[sources.f1]
type = "openf1"
session_key = 9999
[sinks.out]
type = "console"
inputs = ["f1"]
[sinks.gone]
type = "console"
inputs = ["f1"]
"#;

    #[test]
    fn classifies_by_id_type_and_options() {
        let old = pipeline(BASE);
        let new = pipeline(
            r#"
[sources.f1]
type = "openf1"
session_key = 9999
speed = 10.0
[sinks.out]
type = "console"
inputs = [{ from = "f1", when_full = "drop_newest" }]
[sinks.fresh]
type = "console"
inputs = ["f1"]
"#,
        );
        let diff = Diff::between(&old, &new);
        assert_eq!(diff.changed, ["f1"], "an option changed");
        assert_eq!(
            diff.unchanged,
            ["out"],
            "only its edge changed: rewired, not rebuilt"
        );
        assert_eq!(diff.added, ["fresh"]);
        assert_eq!(diff.removed, ["gone"]);
        assert_eq!(diff.summary(), "1 added, 1 removed, 1 changed, 1 unchanged");
    }

    #[test]
    fn the_same_file_is_no_change() {
        let diff = Diff::between(&pipeline(BASE), &pipeline(BASE));
        assert!(diff.is_empty());
        assert_eq!(diff.unchanged.len(), 3);
    }
}
