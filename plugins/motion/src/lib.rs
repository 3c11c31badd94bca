//! Transforms over positions and time: `resample`, `bounds`, `project`, `decimate`, `filter`,
//! `lap_timer`.

use pitwall_api::ComponentSpec;

pub mod bounds;
pub mod decimate;
pub mod filter;
pub mod keys;
pub mod lap_timer;
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
        lap_timer::spec(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_component_type_is_listed_once() {
        let names: Vec<&str> = super::components().iter().map(|s| s.type_name).collect();
        assert_eq!(
            names,
            vec![
                "resample",
                "bounds",
                "project",
                "decimate",
                "filter",
                "lap_timer"
            ]
        );
        for spec in super::components() {
            assert_eq!(spec.role, pitwall_api::Role::Transform);
        }
    }

    #[test]
    fn schemas_and_options_parse() {
        let mut generator = schemars::SchemaGenerator::default();
        for spec in super::components() {
            let schema = (spec.schema)(&mut generator);
            assert!(!schema.as_value().is_null(), "{}", spec.type_name);
        }
        let options = [
            ("resample", "interval_ms = 200"),
            ("bounds", "padding = 5.0"),
            (
                "project",
                "bounds = { min_x = 0.0, max_x = 1.0, min_y = 0.0, max_y = 1.0 }",
            ),
            ("decimate", "every_n = 3"),
            ("filter", "sessions = [9158, \"latest\"]"),
            ("lap_timer", "gates = [0.33, 0.66]"),
        ];
        for (name, text) in options {
            let spec = super::components()
                .into_iter()
                .find(|s| s.type_name == name)
                .unwrap();
            let config = (spec.parse)(toml::from_str(text).unwrap()).unwrap();
            assert!(config.check().is_empty(), "{name}: {:?}", config.check());
        }
        let spec = super::components().remove(0);
        let error = (spec.parse)(toml::from_str("intervl_ms = 1").unwrap()).unwrap_err();
        assert!(error.to_string().contains("intervl_ms"), "{error}");
    }
}
