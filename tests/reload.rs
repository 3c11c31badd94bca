//! Black-box tests of hot reload and shutdown, in the style of Vector's reload tests: the
//! real binary runs a pipeline file in a temporary directory, the test edits the file, and
//! real WebSocket and HTTP clients watch what happens.

mod support;

use std::time::Duration;

use support::{free_port, Client, Running, Workspace};

/// A pipeline replaying frames in a loop to a Cardputer sink on `port`, with the admin
/// endpoint on `admin`, plus `extra` tables.
fn pipeline(port: u16, admin: u16, sink_id: &str, extra: &str) -> String {
    format!(
        r#"
[sources.replay]
type = "file"
path = "frames.ndjson"
speed = 1.0
loop = true

[sinks.{sink_id}]
type = "cardputer"
inputs = ["replay"]
address = "127.0.0.1:{port}"
session_key = "1"

[admin]
address = "127.0.0.1:{admin}"
{extra}"#
    )
}

/// The pipeline above with sink `sink_id`, running, and one client that has seen `frames`
/// frames: where every reload test starts.
struct Screen {
    workspace: Workspace,
    port: u16,
    admin: u16,
    running: Running,
    client: Client,
}

impl Screen {
    async fn start(sink_id: &str, frames: usize) -> Self {
        let workspace = Workspace::with_frames(600);
        let (port, admin) = (free_port(), free_port());
        workspace.write_pipeline(&pipeline(port, admin, sink_id, ""));
        let running = Running::start(&workspace).await;
        running.wait_healthy(admin).await;
        let client = Client::connect(port, "1").await;
        client.wait_for_frames(frames).await;
        Self {
            workspace,
            port,
            admin,
            running,
            client,
        }
    }
}

const RECORDER: &str = r#"
[sinks.recorder]
type = "file"
inputs = ["replay"]
path = "recorded.ndjson"
flush_every_ms = 100
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_sink_keeps_its_client_while_a_sink_is_added_and_removed() {
    let Screen {
        workspace,
        port,
        admin,
        running,
        client,
    } = Screen::start("screen", 5).await;

    // Add a recorder: the screen is unchanged and must not notice.
    workspace.write_pipeline(&pipeline(port, admin, "screen", RECORDER));
    running.wait_reloads(admin, 1, 0).await;
    let recorded = workspace.path("recorded.ndjson");
    support::wait_until("the recorder writes", || {
        std::fs::read_to_string(&recorded)
            .map(|t| t.lines().count() >= 3)
            .unwrap_or(false)
    })
    .await;
    let before = client.frames();
    client.wait_for_frames(before + 5).await;

    // Remove it again.
    workspace.write_pipeline(&pipeline(port, admin, "screen", ""));
    running.wait_reloads(admin, 2, 0).await;
    let lines_after_removal = std::fs::read_to_string(&recorded).unwrap().lines().count();
    let before = client.frames();
    client.wait_for_frames(before + 5).await;
    assert_eq!(
        std::fs::read_to_string(&recorded).unwrap().lines().count(),
        lines_after_removal,
        "a removed recorder keeps no writer open"
    );
    assert!(
        !client.closed(),
        "the client of the unchanged sink was disconnected"
    );
    let health = running.health(admin).await;
    assert_eq!(health["reloads"]["succeeded"], 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_keeps_the_old_graph() {
    let Screen {
        workspace,
        port,
        admin,
        running,
        client,
    } = Screen::start("screen", 3).await;

    workspace.write_pipeline(&pipeline(
        port,
        admin,
        "screen",
        "[sinks.oops]\ntype = \"consol\"\ninputs = [\"replay\"]\n",
    ));
    running.wait_reloads(admin, 0, 1).await;
    let health = running.health(admin).await;
    let message = health["reloads"]["last"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("consol"),
        "the last reload error names the problem: {message}"
    );
    let before = client.frames();
    client.wait_for_frames(before + 5).await;
    assert!(!client.closed());
    assert!(
        running.stderr().contains("did you mean `console`?"),
        "diagnostics are logged"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_moves_from_an_old_component_to_a_new_one() {
    let Screen {
        workspace,
        port,
        admin,
        running,
        client: old_client,
    } = Screen::start("old_screen", 3).await;

    workspace.write_pipeline(&pipeline(port, admin, "new_screen", ""));
    running.wait_reloads(admin, 1, 0).await;
    support::wait_until("the old sink's client is closed", || old_client.closed()).await;
    let new_client = Client::connect(port, "1").await;
    new_client.wait_for_frames(5).await;
    let health = running.health(admin).await;
    let ids: Vec<&str> = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"new_screen") && !ids.contains(&"old_screen"),
        "{ids:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_failure_rolls_back() {
    let Screen {
        workspace,
        port,
        admin,
        running,
        client,
    } = Screen::start("screen", 3).await;

    // Someone else holds this port: the new sink cannot be built.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let second = format!("[sinks.second]\ntype = \"cardputer\"\ninputs = [\"replay\"]\naddress = \"127.0.0.1:{taken}\"\n");
    // Also change the recorder-free graph otherwise, so a half-applied reload would show.
    workspace.write_pipeline(&pipeline(
        port,
        admin,
        "screen",
        &format!("{second}{RECORDER}"),
    ));
    running.wait_reloads(admin, 0, 1).await;
    let health = running.health(admin).await;
    let message = health["reloads"]["last"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("rolled back") && message.contains("second"),
        "{message}"
    );
    assert!(
        !workspace.path("recorded.ndjson").exists(),
        "nothing of the failed graph started"
    );
    let before = client.frames();
    client.wait_for_frames(before + 5).await;
    assert!(!client.closed());
    drop(squatter);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_leaves_every_output_file_complete() {
    let workspace = Workspace::with_frames(2000);
    let (port, admin) = (free_port(), free_port());
    // Fast replay so the recorder is mid-write when SIGTERM arrives.
    let text = pipeline(port, admin, "screen", RECORDER).replace("speed = 1.0", "speed = 50.0");
    workspace.write_pipeline(&text);
    let running = Running::start_without_watch(&workspace).await;
    running.wait_healthy(admin).await;

    // SIGHUP applies an edit even without the file watch.
    workspace.write_pipeline(&text.replace("flush_every_ms = 100", "flush_every_ms = 50"));
    running.signal("HUP");
    running.wait_reloads(admin, 1, 0).await;

    let recorded = workspace.path("recorded.ndjson");
    let whole_lines = || {
        std::fs::read(&recorded)
            .map(|bytes| count_newlines(&bytes))
            .unwrap_or(0)
    };
    support::wait_until("the recorder writes 100 events", || whole_lines() >= 100).await;
    let written_before_term = whole_lines();
    running.signal("TERM");
    let status = running.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status, Some(0), "a clean shutdown exits 0");
    let text = std::fs::read_to_string(&recorded).unwrap();
    assert!(text.ends_with('\n'), "the file ends with a whole line");
    let mut count = 0;
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).expect("every line is a whole event");
        assert_eq!(event["kind"], "frame");
        count += 1;
    }
    assert!(
        count >= written_before_term,
        "{written_before_term} events were on disk before SIGTERM, {count} after"
    );
}

fn count_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}
