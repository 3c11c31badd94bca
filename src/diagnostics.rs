//! Problems in pipeline files, rendered like a compiler's: the message with its key path,
//! the file, line and column, the offending text underlined, and a hint.
//!
//! Every check collects [`Diagnostic`]s instead of stopping at the first, so a user sees
//! everything wrong with a file at once.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity};

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

/// The text of one pipeline file, shared by all of its diagnostics.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
    named: NamedSource<Arc<String>>,
}

impl SourceFile {
    pub fn new(path: &Path, text: String) -> Self {
        let name = path.display().to_string();
        let text = Arc::new(text);
        Self {
            named: NamedSource::new(name.clone(), text.clone()),
            name,
            text,
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One problem, located in a file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub level: Level,
    /// Key path in the file, e.g. `sinks.screen.inputs[0]`; empty for file-level problems.
    pub key_path: String,
    pub message: String,
    /// Byte range of the offending text, if it can be pointed at.
    pub span: Option<Range<usize>>,
    /// Label under the underlined text.
    pub label: Option<String>,
    pub help: Option<String>,
    pub source: SourceFile,
}

impl Diagnostic {
    pub fn error(
        source: &SourceFile,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            level: Level::Error,
            key_path: key_path.into(),
            message: message.into(),
            span: None,
            label: None,
            help: None,
            source: source.clone(),
        }
    }

    pub fn warning(
        source: &SourceFile,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            level: Level::Warning,
            ..Self::error(source, key_path, message)
        }
    }

    pub fn at(mut self, span: Option<Range<usize>>) -> Self {
        self.span = span;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// `file:line:col` of the problem (or just the file).
    pub fn location(&self) -> String {
        match &self.span {
            Some(span) => {
                let (line, col) = self.source.line_col(span.start);
                format!("{}:{line}:{col}", self.source.name)
            }
            None => self.source.name.clone(),
        }
    }

    /// Render like a compiler diagnostic. `color` for terminals; tests use plain text.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_context_lines(1);
        let mut out = String::new();
        let report = Rendered(self);
        if handler.render_report(&mut out, &report).is_err() {
            out = format!("{}: {}", self.location(), self.headline());
        }
        if self.span.is_none() {
            // Without a snippet miette prints no location: say which file it is.
            out.push_str(&format!("  in {}\n", self.source.name));
        }
        out
    }

    /// The one-line message: `key.path: message`.
    pub fn headline(&self) -> String {
        if self.key_path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key_path, self.message)
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.headline())
    }
}

/// Adapter so miette can render a [`Diagnostic`].
struct Rendered<'a>(&'a Diagnostic);

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.headline())
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn severity(&self) -> Option<Severity> {
        Some(match self.0.level {
            Level::Error => Severity::Error,
            Level::Warning => Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0
            .help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.span.as_ref()?;
        Some(&self.0.source.named as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.0.span.clone()?;
        let len = span.end.saturating_sub(span.start).max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            self.0.label.clone(),
            span.start,
            len,
        ))))
    }
}

/// Render a list of diagnostics, errors first, with a summary line.
pub fn render_all(diagnostics: &[Diagnostic], color: bool) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|d| (d.level, d.span.as_ref().map(|s| s.start)));
    let mut out = String::new();
    for diagnostic in &sorted {
        out.push_str(&diagnostic.render(color));
        out.push('\n');
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if let Some(first) = diagnostics.first() {
        out.push_str(&format!(
            "{}: {} error{}, {} warning{}\n",
            first.source.name,
            errors,
            if errors == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" }
        ));
    }
    out
}
