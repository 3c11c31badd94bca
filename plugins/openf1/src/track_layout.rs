//! Placeholder: being written.

use pitwall_api::ComponentSpec;

pub fn spec() -> ComponentSpec {
    unimplemented!("being written")
}
