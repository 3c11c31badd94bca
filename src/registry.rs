//! The table of component types: one place that drives validation, `list`, the JSON
//! Schema and the runtime. A component type is found by its `type` name.

use pitwall_api::{ComponentSpec, Role};

/// Component types, in the order `list` shows them.
pub struct Registry {
    specs: Vec<ComponentSpec>,
}

impl Registry {
    /// Every component type of every plugin family.
    pub fn builtin() -> Self {
        let mut specs = Vec::new();
        specs.extend(pitwall_openf1::components());
        specs.extend(pitwall_motion::components());
        specs.extend(pitwall_web::components());
        specs.extend(pitwall_mqtt::components());
        specs.extend(pitwall_emperor::components());
        specs.extend(pitwall_race::components());
        specs.extend(pitwall_files::components());
        specs.extend(pitwall_assetto::components());
        specs.extend(pitwall_rfactor2::components());
        Self::new(specs)
    }

    /// A registry of chosen types (tests use their own small components).
    pub fn new(specs: Vec<ComponentSpec>) -> Self {
        Self { specs }
    }

    /// The type named `type_name` in the table of `role` (a `file` source and a `file`
    /// sink are different types with the same name).
    pub fn get(&self, role: Role, type_name: &str) -> Option<&ComponentSpec> {
        self.specs
            .iter()
            .find(|spec| spec.role == role && spec.type_name == type_name)
    }

    /// Roles that do have a type of this name (to say "`console` is a sink").
    pub fn roles_of(&self, type_name: &str) -> Vec<Role> {
        self.specs
            .iter()
            .filter(|spec| spec.type_name == type_name)
            .map(|spec| spec.role)
            .collect()
    }

    pub fn of_role(&self, role: Role) -> impl Iterator<Item = &ComponentSpec> {
        self.specs.iter().filter(move |spec| spec.role == role)
    }

    pub fn all(&self) -> &[ComponentSpec] {
        &self.specs
    }
}

/// The closest of `candidates` to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}
