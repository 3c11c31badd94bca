//! A disk that fills up under the `parquet` sink, for real: the binary runs in a private
//! mount namespace (`unshare -Urm`) where the Parquet directory is a 4 MiB tmpfs, half of
//! it taken by a ballast file. A rig streams car telemetry over gRPC to two sinks: `parquet`
//! into the tmpfs and `proto_record` (`.pb.gz`) onto the normal disk. The tmpfs fills up;
//! then the ballast is removed (space comes back), more frames arrive, and the process gets
//! SIGTERM. The shell in the namespace copies the tmpfs out once the process has exited.
//!
//! What is lost, stated, and asserted:
//!
//! - The `.pb.gz` recording on the normal disk loses nothing: every frame sent, in order.
//! - The Parquet file being written when the disk filled keeps every row group completed
//!   before (rows `0..a`, `a` a multiple of `row_group_rows`): it is repaired with a footer
//!   and readable with the parquet crate and with pyarrow.
//! - Rows `a..b` are lost: the row group that failed, and the frames that arrived until a
//!   retry could write a new file. Exactly that many are reported (`lost_rows` in the final
//!   warning, `lost_events` and `discarded_events` of the sink in `/health`).
//! - Rows `b..end` (everything after space came back, up to the last frame) are in a second,
//!   new, readable file. No row is in Parquet twice, none out of order, no other file is
//!   left (no `*.failed`).
//! - One error is logged for the failure, naming the component, the file and the OS error;
//!   the sink is never restarted; after SIGTERM the process stops cleanly but exits 3, as
//!   the README says of a run that lost accepted events, naming the sink in its last error.

#[path = "support/rig.rs"]
mod rig;
mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitwall_files::pbgz::{self, Next};
use rig::{connect, send};
use support::{capture_stderr, free_port, wait_until, Workspace, PATIENCE};

/// Rows per Parquet row group in this test.
const GROUP: u64 = 1000;
/// Frames sent before space comes back: 20 row groups, about twice what fits.
const BEFORE: u64 = 20 * GROUP;

/// Runs in the namespace: mount the tmpfs, fill half of it, run the binary, remove the
/// ballast when the test says so, and copy the tmpfs out after the binary exits.
const SCRIPT: &str = r#"
set -u
mnt=$1 host=$2 bin=$3 pipeline=$4
mount -t tmpfs -o size=4m tmpfs "$mnt" || { echo "disk_full: mount failed" >&2; exit 97; }
dd if=/dev/zero of="$mnt/ballast" bs=1024 count=2048 2>/dev/null || exit 98
mkdir "$mnt/parquet"
"$bin" run "$pipeline" --no-watch &
pid=$!
echo "$pid" > "$host/pid.tmp" && mv "$host/pid.tmp" "$host/pid"
while [ ! -e "$host/free-space" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
rm -f "$mnt/ballast"
touch "$host/space-freed"
wait "$pid"
code=$?
mkdir -p "$host/tmpfs-copy"
cp -a "$mnt/parquet/." "$host/tmpfs-copy/"
echo "$code" > "$host/exit-code.tmp" && mv "$host/exit-code.tmp" "$host/exit-code"
"#;

/// The shell in the namespace, the binary it runs, and what they print.
struct Namespace {
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
    host: PathBuf,
}

impl Namespace {
    fn start(workspace: &Workspace, mnt: &Path) -> Self {
        let probe = std::process::Command::new("unshare")
            .args(["-Urm", "true"])
            .output();
        match probe {
            Ok(output) if output.status.success() => {}
            other => panic!(
                "this test needs `unshare -Urm` (util-linux, user and mount namespaces) to mount a \
                 small tmpfs; it is not usable here: {other:?}"
            ),
        }
        let mut child = tokio::process::Command::new("unshare")
            .arg("-Urm")
            .args(["sh", "-c", SCRIPT, "sh"])
            .arg(mnt)
            .arg(workspace.dir.path())
            .arg(env!("CARGO_BIN_EXE_pitwall-flow"))
            .arg(workspace.path("pipeline.toml"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("unshare starts");
        let stderr = capture_stderr(&mut child);
        Self {
            child,
            stderr,
            host: workspace.dir.path().to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.host.join("pid"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    async fn wait_for_log(&self, what: &str) {
        let started = std::time::Instant::now();
        while !self.stderr().contains(what) {
            assert!(
                started.elapsed() < PATIENCE,
                "no `{what}` in the log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().expect("the binary was started");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Namespace {
    /// A failed test must not leave the binary running (it is not the child: the shell is).
    fn drop(&mut self) {
        if !self.host.join("exit-code").exists() {
            if let Some(pid) = self.pid() {
                let _ = std::process::Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
        let _ = self.child.start_kill();
    }
}

/// `t_ns` of every row of a Parquet file, which must be readable.
fn t_ns(path: &Path) -> Vec<i64> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not readable: {e}", path.display()))
        .build()
        .unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let column = batch.column_by_name("t_ns").expect("a t_ns column");
        values.extend(column.as_primitive::<Int64Type>().values().iter().copied());
    }
    values
}

/// Rows and first/last `t_ns` of a Parquet file as pyarrow reads it.
fn pyarrow_view(path: &Path) -> serde_json::Value {
    const READER: &str = r#"
import json, sys
try:
    import pyarrow.parquet as pq
except ImportError:
    print("NO_PYARROW"); sys.exit(0)
t = pq.read_table(sys.argv[1]).column("t_ns").to_pylist()
print(json.dumps({"rows": len(t), "first": t[0], "last": t[-1]}))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", READER])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "pyarrow cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.trim() != "NO_PYARROW",
        "pyarrow is missing: run scripts/install-test-deps.sh (it runs `python3 -m pip install pyarrow`)"
    );
    serde_json::from_str(text.trim()).unwrap()
}

/// The number after `key=` on the first log line containing `line`.
fn logged_number(log: &str, line: &str, key: &str) -> u64 {
    let found = log
        .lines()
        .find(|l| l.contains(line))
        .unwrap_or_else(|| panic!("no `{line}` in the log:\n{log}"));
    let value = found
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}=` in `{found}`"));
    value.parse().unwrap()
}

#[tokio::test]
async fn a_full_disk_loses_only_what_it_says_and_parquet_carries_on_in_a_new_file() {
    let workspace = Workspace::new();
    let mnt = workspace.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let parquet_dir = mnt.join("parquet");
    let (port, admin) = (free_port(), free_port());
    workspace.write_pipeline(&format!(
        r#"
[admin]
address = "127.0.0.1:{admin}"

[sources.rigs]
type = "assetto_grpc"
address = "127.0.0.1:{port}"

[sinks.archive]
type = "parquet"
inputs = ["rigs"]
path = "{parquet}"
row_group_rows = {GROUP}
compression = "none"

[sinks.recording]
type = "proto_record"
inputs = ["rigs"]
path = "recordings/"
flush_interval_ms = 100
"#,
        parquet = parquet_dir.display()
    ));
    let namespace = Namespace::start(&workspace, &mnt);
    let mut client = connect(port).await;

    // The tmpfs fills up.
    send(&mut client, 0, BEFORE).await;
    namespace.wait_for_log("parquet: writing failed").await;

    // Space comes back; frames keep coming until the sink writes again, then some more
    // (ending mid row group: the last rows are written when the run ends).
    std::fs::write(workspace.path("free-space"), "").unwrap();
    wait_until("the ballast is removed", || {
        workspace.path("space-freed").exists()
    })
    .await;
    let mut sent = BEFORE;
    let started = std::time::Instant::now();
    while !namespace.stderr().contains("parquet: writing again") {
        assert!(
            started.elapsed() < PATIENCE,
            "the sink never wrote again:\n{}",
            namespace.stderr()
        );
        send(&mut client, sent, sent + GROUP).await;
        sent += GROUP;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&mut client, sent, sent + GROUP * 3 / 2).await;
    sent += GROUP * 3 / 2;

    // The sink was never restarted, and counts what it dropped.
    let health: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{admin}/health"))
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("health is JSON");
    let archive = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "archive")
        .expect("the archive sink")
        .clone();
    assert_eq!(archive["status"], "running", "{archive}");
    assert_eq!(archive["restarts"], 0, "{archive}");
    assert!(archive["errors"].as_u64().unwrap() >= 1, "{archive}");

    namespace.signal("TERM");
    wait_until("the binary exits and the tmpfs is copied out", || {
        workspace.path("exit-code").exists()
    })
    .await;
    let log = namespace.stderr();
    let code = std::fs::read_to_string(workspace.path("exit-code")).unwrap();
    assert_eq!(
        code.trim(),
        "3",
        "exit code after SIGTERM (events were lost); log:\n{log}"
    );

    // The .pb.gz on the normal disk: every frame, in order.
    let recordings: Vec<PathBuf> = std::fs::read_dir(workspace.path("recordings"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let mut reader = pbgz::open_path(&recordings[0]).unwrap();
    let mut strings = Default::default();
    let mut recorded = Vec::new();
    while let Next::Frame(bytes) = reader.next_frame() {
        recorded.push(pbgz::decode_car(bytes, &mut strings).unwrap().monotonic_ns);
    }
    assert_eq!(recorded, (0..sent).map(|i| 1_000 + i).collect::<Vec<u64>>());

    // The error: logged once, naming the component, the file and the OS error.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("parquet: writing failed"))
        .collect();
    assert_eq!(failures.len(), 1, "one error, not a flood:\n{log}");
    let mut names: Vec<String> = std::fs::read_dir(workspace.path("tmpfs-copy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "two files, nothing else: {names:?}");
    assert!(names[0].starts_with("car_telemetry-") && names[0].ends_with("-0.parquet"));
    assert!(names[1].starts_with("car_telemetry-") && names[1].ends_with("-1.parquet"));
    let failed_path = parquet_dir.join(&names[0]);
    assert!(
        failures[0].contains("component=archive")
            && failures[0].contains(&format!("path={}", failed_path.display()))
            && failures[0].contains("No space left on device")
            && failures[0].contains("stay readable"),
        "{}",
        failures[0]
    );

    // What Parquet kept: 0..a in the repaired file, b..sent in the new one.
    let first = t_ns(&workspace.path("tmpfs-copy").join(&names[0]));
    let second = t_ns(&workspace.path("tmpfs-copy").join(&names[1]));
    let a = first.len() as u64;
    assert!(
        a >= GROUP && a.is_multiple_of(GROUP) && a < BEFORE,
        "the repaired file holds whole row groups written before the disk filled: {a} rows"
    );
    assert_eq!(
        first,
        (0..a).map(|i| 1_000 + i as i64).collect::<Vec<i64>>()
    );
    let b = sent - second.len() as u64;
    assert!(
        b > a && b >= BEFORE,
        "rows {a}..{b} lost; the new file starts after space came back"
    );
    assert_eq!(
        second,
        (b..sent).map(|i| 1_000 + i as i64).collect::<Vec<i64>>(),
        "the new file holds every frame from its first to the last one sent, in order"
    );
    let lost = b - a;
    assert_eq!(
        logged_number(&log, "parquet: finished; rows were lost", "lost_rows"),
        lost
    );
    // Every drop had been counted before SIGTERM (the rows after it were all written).
    assert_eq!(archive["discarded_events"], lost, "{archive}");
    assert_eq!(archive["lost_events"], lost, "{archive}");
    let summary = format!("`archive` lost {lost} events it had accepted");
    assert!(
        log.contains(&summary),
        "the last word names the sink:\n{log}"
    );

    // pyarrow, an independent reader, reads both (the first one's footer is the repair's).
    for (name, rows, first_t, last_t) in [
        (&names[0], a, 1_000, 1_000 + a - 1),
        (&names[1], sent - b, 1_000 + b, 1_000 + sent - 1),
    ] {
        let view = pyarrow_view(&workspace.path("tmpfs-copy").join(name));
        assert_eq!(view["rows"], rows, "{name}: {view}");
        assert_eq!(view["first"], first_t, "{name}: {view}");
        assert_eq!(view["last"], last_t, "{name}: {view}");
    }
}
