//! Key paths and where they are in the file.
//!
//! The file is parsed twice: once by `toml` into values (what components deserialize) and
//! once by `toml_edit` into a document that remembers the byte range of every key and
//! value. A problem found on the values is then pointed at through its key path.

use std::fmt;
use std::ops::Range;

use toml_edit::{Document, Item};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `sinks.screen.inputs[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Seg::Key(key.to_string()));
        path
    }

    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Seg::Index(index));
        path
    }

    pub fn join(&self, other: &KeyPath) -> Self {
        let mut joined = self.clone();
        joined.0.extend(other.0.iter().cloned());
        joined
    }

    /// Append a path reported by serde (`routes./api/x.kind`, `items[2]`).
    pub fn join_serde(&self, path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut joined = self.clone();
        for segment in path.iter() {
            match segment {
                Segment::Seq { index } => joined.0.push(Seg::Index(*index)),
                Segment::Map { key } => joined.0.push(Seg::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        joined
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(key) => {
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "\"{key}\"")?;
                    }
                }
                Seg::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Byte ranges of keys and values in the file.
pub struct Spans {
    document: Option<Document<String>>,
}

impl Spans {
    pub fn parse(text: &str) -> Self {
        Self {
            document: Document::parse(text.to_string()).ok(),
        }
    }

    /// The range of the value at `path`, or of the deepest part of the path that exists
    /// (a missing option points at its component's table).
    pub fn value(&self, path: &KeyPath) -> Option<Range<usize>> {
        self.find(path, false)
    }

    /// The range of the key at `path` itself (an unknown option is its key's fault).
    pub fn key(&self, path: &KeyPath) -> Option<Range<usize>> {
        self.find(path, true)
    }

    fn find(&self, path: &KeyPath, want_key: bool) -> Option<Range<usize>> {
        let document = self.document.as_ref()?;
        let mut item: &Item = document.as_item();
        let mut best: Option<Range<usize>> = None;
        let last = path.0.len().saturating_sub(1);
        for (i, seg) in path.0.iter().enumerate() {
            match seg {
                Seg::Key(name) => {
                    let Some((key, child)) = item
                        .as_table_like()
                        .and_then(|table| table.get_key_value(name))
                    else {
                        break;
                    };
                    let key_span = key.span();
                    let value_span = item_span(child);
                    best = if i == last && want_key {
                        key_span.or(value_span).or(best)
                    } else {
                        value_span.or(key_span).or(best)
                    };
                    item = child;
                }
                Seg::Index(index) => {
                    if let Some(value) = item.as_array().and_then(|array| array.get(*index)) {
                        best = value.span().or(best);
                        break;
                    }
                    if let Some(table) = item
                        .as_array_of_tables()
                        .and_then(|tables| tables.get(*index))
                    {
                        best = table.span().or(best);
                        // Descend no further: array-of-tables paths are rare in pipelines.
                    }
                    break;
                }
            }
        }
        best
    }
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(value) => value.span(),
        Item::Table(table) => table.span(),
        Item::ArrayOfTables(tables) => tables.span(),
        Item::None => None,
    }
}
