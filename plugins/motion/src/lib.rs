//! Transforms over positions and time: `resample`, `bounds`, `project`, `decimate`, `filter`.

use pitwall_api::ComponentSpec;

pub mod bounds;
pub mod decimate;
pub mod filter;
pub mod keys;
pub mod project;
pub mod resample;

/// Every component type of this family.
pub fn components() -> Vec<ComponentSpec> {
    vec![
        resample::spec(),
        bounds::spec(),
        project::spec(),
        decimate::spec(),
        filter::spec(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_component_type_is_listed_once() {
        let names: Vec<&str> = super::components().iter().map(|s| s.type_name).collect();
        assert_eq!(
            names,
            vec!["resample", "bounds", "project", "decimate", "filter"]
        );
        for spec in super::components() {
            assert_eq!(spec.role, pitwall_api::Role::Transform);
        }
    }
}
