//! The `pitwall-flow` command line.
//!
//! Exit codes: 0 success; 1 the pipeline is invalid or could not start (or `validate` found
//! errors); 2 a shutdown hit its deadline and aborted components (queued events may be lost).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use pitwall_api::http::HttpServers;
use tokio::sync::mpsc;

use crate::config;
use crate::diagnostics::render_all;
use crate::registry::Registry;
use crate::runtime::{Stopped, Topology};

#[derive(Parser)]
#[command(
    name = "pitwall-flow",
    version,
    about = "Runs motorsport telemetry pipelines written in TOML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until Ctrl-C; edits to the file change the running graph.
    Run {
        pipeline: PathBuf,
        /// Do not reload when the file changes (SIGHUP still reloads).
        #[arg(long)]
        no_watch: bool,
    },
    /// Check pipeline files and report every problem; exit 1 if any has errors.
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Print the pipeline's graph as Mermaid or Graphviz DOT.
    Graph {
        pipeline: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// List component types with their options and defaults.
    List {
        /// Show only this type.
        #[arg(value_name = "TYPE")]
        type_name: Option<String>,
        /// Print the reference as Markdown (the README's component section).
        #[arg(long)]
        markdown: bool,
    },
    /// Print the JSON Schema of pipeline files (for editor completion and checks).
    Schema,
    /// Write a simulated OpenF1 session (real Monza outline, simulated race) as an OpenF1 cache.
    SampleSession {
        /// Race length in laps.
        #[arg(long, default_value_t = 5)]
        laps: u32,
        /// Number of cars.
        #[arg(long, default_value_t = 20)]
        cars: u32,
        /// Random seed: the same seed gives the same race.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Session key of the simulated session.
        #[arg(long, default_value_t = 9999)]
        session_key: u32,
        /// Cache directory to write `race_data_{session_key}/` into.
        #[arg(long, default_value = "race_data")]
        out: PathBuf,
        /// Write plain .json files instead of .json.gz.
        #[arg(long)]
        no_gzip: bool,
    },
    /// Show a Parquet file: schema, first rows, statistics per column; optionally write CSV.
    Inspect {
        /// The Parquet file (a `parquet` sink recording, a converter's output, any Parquet).
        file: PathBuf,
        /// How many of the first rows to print.
        #[arg(short = 'n', long = "rows", default_value_t = 50)]
        rows: usize,
        /// Columns to show and export, in this order (default: all).
        #[arg(short = 'c', long, visible_alias = "cols", num_args = 1..)]
        columns: Vec<String>,
        /// Write the selected columns (every row) to this CSV file.
        #[arg(long, value_name = "OUT.csv")]
        to_csv: Option<PathBuf>,
    },
    /// Convert `.pb.gz` telemetry recordings into one Parquet file (car telemetry columns).
    Convert {
        /// The recordings (the bridge's `telemetry_record.pb.gz`, `proto_record` files), in order.
        #[arg(required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// The Parquet file to write; it must not exist yet.
        #[arg(short = 'o', long, value_name = "OUT.parquet")]
        output: PathBuf,
        /// Compression of the column chunks.
        #[arg(long, value_enum, default_value_t = ConvertCompression::Snappy)]
        compression: ConvertCompression,
        /// Rows per row group.
        #[arg(long, default_value_t = 65_536)]
        row_group_rows: usize,
    },
    /// Plot columns of a Parquet file as stacked panels sharing the x axis, into one PNG.
    Plot {
        /// The Parquet file.
        file: PathBuf,
        /// Columns to plot, one panel each (default: speed_kmh, rpm, gear, gas, brake, steer).
        #[arg(short = 'c', long, visible_alias = "cols", num_args = 1..)]
        columns: Vec<String>,
        /// The PNG to write (default: the input file with a .png extension).
        #[arg(short = 'o', long, value_name = "OUT.png")]
        output: Option<PathBuf>,
        /// The x axis: seconds from the first sample, or lap distance.
        #[arg(long, value_enum, default_value_t = PlotX::Time)]
        x: PlotX,
        /// Only the first N rows (after --lap).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only the rows of this lap (the `lap` or `completed_laps` column).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        lap: Option<i64>,
    },
}

#[derive(Copy, Clone, ValueEnum)]
enum ConvertCompression {
    Snappy,
    None,
}

#[derive(Copy, Clone, ValueEnum)]
enum PlotX {
    Time,
    Distance,
}

/// Commands that print (`schema | head`, `list | less`) end quietly when the reader goes
/// away, as Unix tools do, instead of panicking on a broken pipe. `run` keeps Rust's
/// default (the signal ignored) so a server never dies because a log reader did.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[derive(Copy, Clone, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Run { pipeline, no_watch } => {
            crate::logging::init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the async runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            let code = runtime.block_on(run(&pipeline, !no_watch));
            // A blocking call stuck in the kernel (a sink writing to a FIFO nobody reads)
            // must not hold the exit: the runtime's threads get a moment, then are left.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            code
        }
        Command::Validate { pipelines } => validate(&pipelines),
        Command::Graph { pipeline, format } => graph(&pipeline, format),
        Command::List {
            type_name,
            markdown,
        } => {
            let registry = Registry::builtin();
            if markdown {
                print!("{}", crate::schema::render_markdown(&registry));
            } else {
                print!(
                    "{}",
                    crate::schema::render_list(&registry, type_name.as_deref())
                );
            }
            ExitCode::SUCCESS
        }
        Command::Schema => {
            let schema = crate::schema::pipeline_schema(&Registry::builtin());
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::SampleSession {
            laps,
            cars,
            seed,
            session_key,
            out,
            no_gzip,
        } => sample_session(laps, cars, seed, session_key, out, !no_gzip),
        Command::Inspect {
            file,
            rows,
            columns,
            to_csv,
        } => {
            let options = crate::tools::inspect::InspectOptions {
                path: file,
                rows,
                columns,
                to_csv,
            };
            tool_exit(crate::tools::inspect::inspect(
                &options,
                &mut std::io::stdout().lock(),
            ))
        }
        Command::Convert {
            inputs,
            output,
            compression,
            row_group_rows,
        } => {
            let options = crate::tools::convert::ConvertOptions {
                inputs,
                output,
                compression: match compression {
                    ConvertCompression::Snappy => {
                        pitwall_files::parquet::ParquetCompression::Snappy
                    }
                    ConvertCompression::None => pitwall_files::parquet::ParquetCompression::None,
                },
                row_group_rows,
            };
            tool_exit(crate::tools::convert::convert(&options).map(|summary| {
                for (path, how) in &summary.cut {
                    eprintln!("warning: {}: {how}", path.display());
                }
                if summary.malformed > 0 {
                    eprintln!(
                        "warning: skipped {} records that are not telemetry frames",
                        summary.malformed
                    );
                }
                println!(
                    "wrote {} ({} frames, {:.1} MB) in {:.2} s: {:.0} frames/s",
                    options.output.display(),
                    summary.frames,
                    summary.output_bytes as f64 / 1e6,
                    summary.seconds,
                    summary.frames as f64 / summary.seconds.max(1e-9),
                );
            }))
        }
        Command::Plot {
            file,
            columns,
            output,
            x,
            limit,
            lap,
        } => {
            let options = crate::tools::plot::PlotOptions {
                output: output.unwrap_or_else(|| file.with_extension("png")),
                path: file,
                columns,
                x: match x {
                    PlotX::Time => crate::tools::plot::XAxis::Time,
                    PlotX::Distance => crate::tools::plot::XAxis::Distance,
                },
                limit,
                lap,
            };
            tool_exit(crate::tools::plot::plot(&options).map(|summary| {
                println!(
                    "wrote {} ({}x{} px): {} from {} rows",
                    summary.output.display(),
                    summary.width,
                    summary.height,
                    summary.columns.join(", "),
                    summary.rows
                );
            }))
        }
    }
}

/// Exit code of `inspect` and `plot`: 0, or 1 after printing the diagnostic.
fn tool_exit(result: Result<(), crate::tools::ToolError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{}", crate::tools::render_error(&error, color()));
            ExitCode::from(1)
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let registry = Registry::builtin();
    let mut failed = false;
    for path in paths {
        match config::load(path, &registry) {
            Ok(pipeline) => {
                if !pipeline.warnings.is_empty() {
                    eprint!("{}", render_all(&pipeline.warnings, color()));
                }
                println!(
                    "{}: ok ({} components)",
                    path.display(),
                    pipeline.components.len()
                );
            }
            Err(diagnostics) => {
                failed = true;
                eprint!("{}", render_all(&diagnostics, color()));
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn graph(path: &Path, format: GraphFormat) -> ExitCode {
    match config::load(path, &Registry::builtin()) {
        Ok(pipeline) => {
            let text = match format {
                GraphFormat::Mermaid => crate::graph::render::mermaid(&pipeline),
                GraphFormat::Dot => crate::graph::render::dot(&pipeline),
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprint!("{}", render_all(&diagnostics, color()));
            ExitCode::from(1)
        }
    }
}

fn sample_session(
    laps: u32,
    cars: u32,
    seed: u64,
    session_key: u32,
    out: PathBuf,
    gzip: bool,
) -> ExitCode {
    let options = pitwall_openf1::sample::SampleOptions {
        session_key,
        laps,
        cars,
        seed,
        gzip,
        out_dir: out,
    };
    let started = Instant::now();
    match pitwall_openf1::sample::generate(&options) {
        Ok(summary) => {
            println!(
                "wrote a SIMULATED session to {} in {:.2?}: {} laps, {} location and {} car_data rows, {} bytes",
                summary.dir.display(),
                started.elapsed(),
                summary.laps,
                summary.location_rows,
                summary.car_data_rows,
                summary.bytes_written
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot write the sample session: {error}");
            ExitCode::from(1)
        }
    }
}

/// `run`: start, then serve reloads and signals until told to stop.
async fn run(path: &Path, watch: bool) -> ExitCode {
    let registry = Registry::builtin();
    let pipeline = match config::load(path, &registry) {
        Ok(pipeline) => pipeline,
        Err(diagnostics) => {
            eprint!("{}", render_all(&diagnostics, color()));
            return ExitCode::from(1);
        }
    };
    if !pipeline.warnings.is_empty() {
        eprint!("{}", render_all(&pipeline.warnings, color()));
    }
    let mut last_text = pipeline.source.text.clone();
    let exit_when_done = pipeline.runtime.exit_when_done;
    let debounce = Duration::from_millis(pipeline.runtime.reload_debounce_ms);
    let count = pipeline.components.len();
    let mut topology = match Topology::start(pipeline, HttpServers::default()).await {
        Ok(topology) => topology,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(pipeline = %path.display(), components = count, "running; Ctrl-C to stop");

    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let _watch = if watch {
        match crate::runtime::watch::watch_file(path, debounce, reload_tx.clone()) {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the pipeline file; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    let mut stop_signals = StopSignals::new();
    let mut hangup = HangupSignal::new();

    loop {
        tokio::select! {
            reason = stop_signals.recv() => {
                tracing::info!("{reason}: stopping sources, draining, flushing");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading");
                reload(path, &registry, &mut topology, &mut last_text, true).await;
            }
            Some(()) = reload_rx.recv() => {
                reload(path, &registry, &mut topology, &mut last_text, false).await;
            }
            _ = tokio::time::sleep(Duration::from_millis(5)), if exit_when_done => {
                if topology.sources_finished() {
                    tracing::info!("every source has finished: draining and exiting");
                    break;
                }
            }
        }
    }
    match topology.shutdown().await {
        Stopped::Clean => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Stopped::Lost(lost) => {
            for (id, events) in &lost {
                tracing::error!(
                    component = %id,
                    lost_events = events,
                    "stopped, but `{id}` lost {events} events it had accepted (see its errors above)"
                );
            }
            ExitCode::from(3)
        }
        Stopped::DeadlineExceeded(aborted) => {
            tracing::error!(aborted = ?aborted, "shutdown deadline passed: these were aborted");
            ExitCode::from(2)
        }
    }
}

/// Apply the file on disk to the running graph, or explain why not and change nothing.
async fn reload(
    path: &Path,
    registry: &Registry,
    topology: &mut Topology,
    last_text: &mut std::sync::Arc<String>,
    forced: bool,
) {
    let started = Instant::now();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            // Mid-rename the file can be briefly missing; the next event retries.
            tracing::warn!(%error, "cannot read the pipeline file; keeping the running graph");
            return;
        }
    };
    if !forced && text == **last_text {
        tracing::debug!("file touched but unchanged");
        return;
    }
    *last_text = std::sync::Arc::new(text.clone());
    let pipeline = match config::load_text(path, text, registry, &|name| std::env::var(name).ok()) {
        Ok(pipeline) => pipeline,
        Err(diagnostics) => {
            eprint!("{}", render_all(&diagnostics, color()));
            let first = diagnostics
                .iter()
                .find(|d| d.is_error())
                .map(|d| d.to_string())
                .unwrap_or_default();
            tracing::error!("the edited pipeline is invalid; the running graph is unchanged");
            topology
                .admin()
                .record_reload(false, format!("invalid: {first}"));
            return;
        }
    };
    if !pipeline.warnings.is_empty() {
        eprint!("{}", render_all(&pipeline.warnings, color()));
    }
    match topology.reload(pipeline).await {
        Ok(diff) => {
            let summary = diff.summary();
            tracing::info!(elapsed = ?started.elapsed(), "reloaded: {summary}");
            topology.admin().record_reload(true, summary);
        }
        Err(error) => {
            tracing::error!("reload rolled back, the running graph is unchanged: {error}");
            topology
                .admin()
                .record_reload(false, format!("rolled back: {error}"));
        }
    }
}

/// Ctrl-C and SIGTERM: stop. On Windows also Ctrl-Break, the console window being closed,
/// logoff and shutdown: Windows then allows a few seconds, enough to close every file.
struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    windows: Vec<(&'static str, WindowsStop)>,
}

#[cfg(windows)]
enum WindowsStop {
    Break(tokio::signal::windows::CtrlBreak),
    Close(tokio::signal::windows::CtrlClose),
    Logoff(tokio::signal::windows::CtrlLogoff),
    Shutdown(tokio::signal::windows::CtrlShutdown),
}

#[cfg(windows)]
impl WindowsStop {
    async fn recv(&mut self) {
        match self {
            Self::Break(signal) => signal.recv().await,
            Self::Close(signal) => signal.recv().await,
            Self::Logoff(signal) => signal.recv().await,
            Self::Shutdown(signal) => signal.recv().await,
        };
    }
}

impl StopSignals {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok(),
            #[cfg(windows)]
            windows: {
                use tokio::signal::windows as console;
                let mut signals = Vec::new();
                if let Ok(signal) = console::ctrl_break() {
                    signals.push(("Ctrl-Break", WindowsStop::Break(signal)));
                }
                if let Ok(signal) = console::ctrl_close() {
                    signals.push(("console closed", WindowsStop::Close(signal)));
                }
                if let Ok(signal) = console::ctrl_logoff() {
                    signals.push(("logoff", WindowsStop::Logoff(signal)));
                }
                if let Ok(signal) = console::ctrl_shutdown() {
                    signals.push(("system shutdown", WindowsStop::Shutdown(signal)));
                }
                signals
            },
        }
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = terminate => "SIGTERM",
            }
        }
        #[cfg(windows)]
        {
            if self.windows.is_empty() {
                let _ = tokio::signal::ctrl_c().await;
                return "interrupted";
            }
            let others =
                futures_util::future::select_all(self.windows.iter_mut().map(|(name, signal)| {
                    Box::pin(async move {
                        signal.recv().await;
                        *name
                    })
                }));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                (name, _, _) = others => name,
            }
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

/// SIGHUP: reload.
struct HangupSignal {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl HangupSignal {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.hangup.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
