#!/usr/bin/env python3
"""pitwall-flow side by side with Python re-creations of the programs it replaces.

    python3 benches/versus/run.py                 # every scenario (< 10 minutes)
    python3 benches/versus/run.py fanout gate     # some of them
    python3 benches/versus/run.py --help

For each scenario the runner starts pitwall-flow (target/release/pitwall-flow, built with
`cargo build --release` when missing or with --build) and the re-creation in turn, drives
both with the same load generator on the same input, measures the server process the same
way (/proc and wait4), and prints one Markdown table: scenario, metric, pitwall-flow,
re-creation, and how many times better pitwall-flow is (below 1 it is worse).

Scenarios: fanout, replay, grpc, convert, gate, reload, rf2 (see README.md next to this file).
Standard library only; the re-creations and load generators run under the same Python and
need requirements.txt, which the runner installs with pip when an import fails. Linux only
(/proc, wait4). Inputs that take a while to make (the 85-lap race, the recording) are kept
in target/versus/ and reused.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BINARY = REPO / "target" / "release" / "pitwall-flow"
SAMPLE = REPO / "pipelines" / "sample"
CLIENTS = HERE / "clients"
RECREATIONS = HERE / "recreations"
PYTHON = sys.executable

sys.path.insert(0, str(HERE))
import common  # noqa: E402

SCENARIOS = ["fanout", "replay", "grpc", "convert", "gate", "reload", "rf2"]
IMPORTS = "fastapi, uvicorn, pandas, grpc, grpc_tools, pyarrow, websockets, aiomqtt, h2"


# -- results ---------------------------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows = []

    def add(self, scenario, metric, ours, theirs, better, fmt="{:.1f}"):
        """`better` is "lower" or "higher": which way the metric improves."""
        if ours and theirs and ours == ours and theirs == theirs:
            factor = theirs / ours if better == "lower" else ours / theirs
            if factor >= 10:
                ratio = f"{factor:.0f}×"
            elif factor >= 0.1:
                ratio = f"{factor:.2f}×"
            else:
                ratio = f"{factor:.3f}×"
        else:
            ratio = "n/a"
        row = (scenario, metric, fmt.format(ours), fmt.format(theirs), ratio)
        self.rows.append(row)
        print("  " + " | ".join(row), flush=True)

    def markdown(self):
        lines = [
            "| scenario | metric | pitwall-flow | re-creation | pitwall-flow better by |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(open("/proc/meminfo").readline().split()[1])
    except OSError:
        mem_kib = 0
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} × {model}, {mem_kib / 1048576:.0f} GiB RAM, Linux "
        f"{platform.release()}, Python {platform.python_version()}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


# -- processes -------------------------------------------------------------------------------


class Server:
    """A server process for the length of a `with` block, stopped with SIGINT (Ctrl-C)."""

    def __init__(self, argv, log, env=None, cwd=None):
        self.argv, self.log, self.env, self.cwd = argv, log, env, cwd

    def __enter__(self):
        self.log_file = open(self.log, "ab")
        env = dict(os.environ, **(self.env or {}))
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def __exit__(self, *exc):
        self.stop()


def run_json(argv, env=None, timeout=900):
    """Run a load generator and return the JSON object on its last line."""
    out = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        env=dict(os.environ, **(env or {})),
        timeout=timeout,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed_process(argv, env=None, cwd=None):
    """Run to completion; (wall seconds, peak RSS MiB, CPU seconds) from wait4."""
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=dict(os.environ, RUST_LOG="warn", **(env or {})),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            text = stderr.read().decode(errors="replace")
            raise RuntimeError(f"{argv[:3]} exited with {proc.returncode}:\n{text[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


# -- set-up ----------------------------------------------------------------------------------


def ensure_requirements():
    check = subprocess.run([PYTHON, "-c", f"import {IMPORTS}"], capture_output=True)
    if check.returncode == 0:
        return
    print("installing benches/versus/requirements.txt with pip ...", flush=True)
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "-r", str(HERE / "requirements.txt")], check=True
    )


def ensure_binary(build):
    if build or not BINARY.exists():
        print("building target/release/pitwall-flow ...", flush=True)
        subprocess.run(
            ["cargo", "build", "--release", "--bin", "pitwall-flow"], cwd=REPO, check=True
        )


def stubs(work):
    """telemetry.v1 Python stubs generated from proto/ with grpc_tools, as the seed says."""
    out = work / "stubs"
    if not (out / "telemetry" / "v1" / "telemetry_pb2_grpc.py").exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                PYTHON, "-m", "grpc_tools.protoc", "-I", str(REPO / "proto"),
                f"--python_out={out}", f"--grpc_python_out={out}",
                str(REPO / "proto" / "telemetry" / "v1" / "telemetry.proto"),
            ],
            check=True,
        )
        # As the seed's README says: make telemetry/ and telemetry/v1/ packages.
        (out / "telemetry" / "__init__.py").touch()
        (out / "telemetry" / "v1" / "__init__.py").touch()
    return {"PYTHONPATH": str(out)}


def pitwall(pipeline, watch=False):
    argv = [str(BINARY), "run"]
    if not watch:
        argv.append("--no-watch")
    return argv + [str(pipeline)]


def write(path, text):
    path.write_text(text)
    return path


# -- scenarios -------------------------------------------------------------------------------


def cardputer_pipeline(port, extra=""):
    return f"""
[sources.f1]
type = "openf1"
mode = "replay"
session_key = 9999
cache_dir = "{SAMPLE}"
speed = 1.0

[transforms.layout]
type = "track_layout"
inputs = ["f1"]
circuit_info = "{SAMPLE}/race_data_9999/circuit_info.json"

[transforms.frames]
type = "resample"
inputs = ["f1", "layout"]
interval_ms = 100

[sinks.cardputer]
type = "cardputer"
inputs = ["f1", "layout", "frames"]
address = "127.0.0.1:{port}"
session_key = "9999"
max_clients = 2048
{extra}"""


def pocket_pitwall(port):
    return [
        PYTHON, str(RECREATIONS / "pocket_pitwall" / "server.py"),
        "--data-dir", str(SAMPLE), "--host", "127.0.0.1", "--port", str(port),
    ]


def scenario_fanout(args, work, table):
    """Cardputer fan-out: N clients at 10 Hz on the bundled sample session."""
    counts = [int(n) for n in args.clients.split(",")]
    results = {}
    for side in ("pitwall", "recreation"):
        port = common.free_port()
        if side == "pitwall":
            argv = pitwall(write(work / "fanout.toml", cardputer_pipeline(port)))
        else:
            argv = pocket_pitwall(port)
        with Server(argv, work / f"fanout-{side}.log") as server:
            common.wait_port(port, 120, server.proc)
            time.sleep(2.0)
            idle_kib = common.memory_kib(server.pid)[0]
            for n in counts:
                r = run_json(
                    [
                        PYTHON, str(CLIENTS / "ws_clients.py"),
                        "--url", f"ws://127.0.0.1:{port}/ws/9999", "--count", str(n),
                        "--warmup", str(args.warmup), "--duration", str(args.duration),
                        "--pid", str(server.pid),
                    ]
                )
                if r["connected"] < n:
                    raise RuntimeError(f"{side}: {r['connected']} of {n} clients connected")
                r["idle_kib"] = idle_kib
                results[(side, n)] = r
                time.sleep(2.0)
    for n in counts:
        ours, theirs = results[("pitwall", n)], results[("recreation", n)]
        name = f"fanout {n} clients"
        table.add(name, "server CPU, % of one core", ours["server_cpu_pct"],
                  theirs["server_cpu_pct"], "lower")
        table.add(name, "server RSS, MiB", ours["server_rss_kib"] / 1024,
                  theirs["server_rss_kib"] / 1024, "lower")
        table.add(name, "RSS per client (above idle), KiB",
                  max(0, ours["server_rss_kib"] - ours["idle_kib"]) / n,
                  max(0, theirs["server_rss_kib"] - theirs["idle_kib"]) / n, "lower")
        table.add(name, "frames/s received per client (mean)", ours["rate_mean"],
                  theirs["rate_mean"], "higher", "{:.2f}")


def race_cache(work):
    cache = work / "race85"
    if not (cache / "race_data_9999" / "manifest.json").exists():
        print("  generating the 85-lap race (pitwall-flow sample-session) ...", flush=True)
        subprocess.run(
            [str(BINARY), "sample-session", "--laps", "85", "--cars", "20", "--seed", "7",
             "--no-gzip", "--out", str(cache)],
            check=True, stdout=subprocess.DEVNULL,
        )
    return cache


def scenario_replay(args, work, table):
    """Full-race replay preparation: cache -> every 100 ms frame, whole process."""
    cache = race_cache(args.cache)
    pipeline = write(work / "replay.toml", f"""
[sources.f1]
type = "openf1"
session_key = 9999
cache_dir = "{cache}"
speed = 0

[transforms.layout]
type = "track_layout"
inputs = ["f1"]

[transforms.frames]
type = "resample"
inputs = ["f1", "layout"]

[sinks.cardputer]
type = "cardputer"
inputs = ["f1", "layout", "frames"]
address = "127.0.0.1:0"

[runtime]
exit_when_done = true
""")
    runs = {"pitwall": [], "recreation": []}
    for _ in range(args.repeat):
        runs["pitwall"].append(timed_process(pitwall(pipeline)))
        runs["recreation"].append(timed_process(
            [PYTHON, str(RECREATIONS / "pocket_pitwall" / "server.py"),
             "--data-dir", str(cache), "--prepare-only"]))
    name = "replay preparation, 85 laps × 20 cars"
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    rss = {k: max(r[1] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    table.add(name, f"wall time, s (median of {args.repeat})", wall["pitwall"],
              wall["recreation"], "lower", "{:.2f}")
    table.add(name, "CPU time, s", cpu["pitwall"], cpu["recreation"], "lower", "{:.2f}")
    table.add(name, "peak RSS, MiB", rss["pitwall"], rss["recreation"], "lower")


def scenario_grpc(args, work, table):
    """gRPC ingest: rigs stream frames, every frame acked."""
    env = stubs(args.cache)
    results = {}
    for side in ("pitwall", "recreation"):
        port = common.free_port()
        address = f"127.0.0.1:{port}"
        if side == "pitwall":
            # Ingest and ack only, as the reference server: records go to a filter that
            # passes nothing, in front of the console.
            argv = pitwall(write(work / "grpc.toml", f"""
[sources.rigs]
type = "assetto_grpc"
address = "{address}"

[transforms.discard]
type = "filter"
inputs = ["rigs"]
sessions = ["no-such-session"]

[sinks.null]
type = "console"
inputs = ["discard"]
"""))
        else:
            argv = [PYTHON, str(RECREATIONS / "ac_ingest" / "reference_ingest_server.py"),
                    "--address", address]
        with Server(argv, work / f"grpc-{side}.log", env=env) as server:
            common.wait_port(port, 60, server.proc)
            r = run_json(
                [PYTHON, str(CLIENTS / "grpc_rigs.py"), "--address", address,
                 "--rigs", str(args.rigs), "--frames", str(args.grpc_frames),
                 "--pid", str(server.pid)],
                env=env,
            )
            if not r["all_acked"] or r["acks"] != r["frames_sent"]:
                raise RuntimeError(f"{side}: not every frame was acked: {r}")
            results[side] = r
    ours, theirs = results["pitwall"], results["recreation"]
    name = f"gRPC ingest, {args.rigs} rigs × {args.grpc_frames} frames"
    table.add(name, "frames acked per second", ours["frames_per_s"], theirs["frames_per_s"],
              "higher", "{:,.0f}")
    table.add(name, "server CPU per frame, µs",
              1e6 * ours["server_cpu_s"] / ours["acks"],
              1e6 * theirs["server_cpu_s"] / theirs["acks"], "lower")


def count_rows(files, env):
    code = (
        "import sys, pyarrow.parquet as pq; "
        "print(sum(pq.ParquetFile(f).metadata.num_rows for f in sys.argv[1:]))"
    )
    out = subprocess.run([PYTHON, "-c", code, *map(str, files)], env=dict(os.environ, **env),
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def scenario_convert(args, work, table):
    """.pb.gz -> Parquet conversion of the same recording."""
    env = stubs(args.cache)
    recording = args.cache / f"recording-{args.convert_frames}.pb.gz"
    if not recording.exists():
        print(f"  writing a {args.convert_frames}-frame recording ...", flush=True)
        subprocess.run([PYTHON, str(CLIENTS / "make_recording.py"), str(recording),
                        "--frames", str(args.convert_frames)],
                       env=dict(os.environ, **env), check=True)
    runs = {"pitwall": [], "recreation": []}
    for i in range(args.repeat):
        out = work / f"parquet-{i}"
        out.mkdir()
        runs["pitwall"].append(timed_process(
            pitwall(REPO / "pipelines" / "ac-convert.toml"),
            env={"INPUT": str(recording), "OUTPUT": str(out)}))
        rows = count_rows(sorted(out.glob("*.parquet")), env)
        assert rows == args.convert_frames, f"pitwall-flow wrote {rows} rows"
        target = work / f"recreation-{i}.parquet"
        runs["recreation"].append(timed_process(
            [PYTHON, str(RECREATIONS / "ac_ingest" / "recorder_reader.py"),
             str(recording), str(target)], env=env))
        rows = count_rows([target], env)
        assert rows == args.convert_frames, f"the re-creation wrote {rows} rows"
        shutil.rmtree(out)
        target.unlink()
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items()}
    rss = {k: max(r[1] for r in v) for k, v in runs.items()}
    name = f".pb.gz → Parquet, {args.convert_frames:,} frames"
    table.add(name, "frames per second (wall)", args.convert_frames / wall["pitwall"],
              args.convert_frames / wall["recreation"], "higher", "{:,.0f}")
    table.add(name, "CPU time, s", cpu["pitwall"], cpu["recreation"], "lower", "{:.2f}")
    table.add(name, "peak RSS, MiB", rss["pitwall"], rss["recreation"], "lower")


class Mosquitto(Server):
    def __init__(self, port, work):
        conf = write(work / "mosquitto.conf",
                     f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
        super().__init__(["/usr/sbin/mosquitto", "-c", str(conf)], work / "mosquitto.log")


def scenario_gate(args, work, table):
    """Light gate -> Mosquitto -> server -> lap_finish at a browser."""
    if not Path("/usr/sbin/mosquitto").exists():
        print("  skipped: /usr/sbin/mosquitto is not installed (Debian package mosquitto)")
        return
    browsers = [int(n) for n in args.browsers.split(",")]
    results = {}
    broker_port = common.free_port()
    with Mosquitto(broker_port, work) as broker:
        common.wait_port(broker_port, 30, broker.proc)
        for side in ("pitwall", "recreation"):
            for n in browsers:
                port = common.free_port()
                env = None
                if side == "pitwall":
                    argv = pitwall(write(work / "gate.toml", f"""
[sources.gates]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker_port}"
topics = ["carrera/track{{lane}}/finish"]
emit = "gate_trigger"
qos = 0

[transforms.race_control]
type = "race_control"
inputs = ["gates", {{ from = "dashboard", when_full = "drop_oldest" }}]
lanes = 2
light_interval_ms = 10
hold_min_ms = 10
hold_max_ms = 20
min_lap_ms = 1

[sinks.dashboard]
type = "dashboard"
inputs = ["race_control"]
address = "127.0.0.1:{port}"
max_clients = 1000

[sinks.race_start]
type = "mqtt"
inputs = ["race_control"]
url = "mqtt://127.0.0.1:{broker_port}"
topic = "carrera/race/start"
kinds = ["command"]
text = "GO"
"""))
                else:
                    argv = [PYTHON, "-m", "uvicorn", "main:app", "--host", "127.0.0.1",
                            "--port", str(port), "--log-level", "warning"]
                    env = {
                        "CARRERA_BROKER": "127.0.0.1",
                        "CARRERA_BROKER_PORT": str(broker_port),
                        "CARRERA_LIGHT_INTERVAL_S": "0.01",
                        "CARRERA_HOLD_MIN_S": "0.01",
                        "CARRERA_HOLD_MAX_S": "0.02",
                    }
                with Server(argv, work / f"gate-{side}.log", env=env,
                            cwd=RECREATIONS / "carrera") as server:
                    common.wait_port(port, 60, server.proc)
                    time.sleep(0.5)  # the MQTT subscription
                    results[(side, n)] = run_json(
                        [PYTHON, str(CLIENTS / "gate_latency.py"),
                         "--ws", f"ws://127.0.0.1:{port}/ws", "--broker-port", str(broker_port),
                         "--browsers", str(n), "--gates", str(args.gates)])
    for n in browsers:
        ours, theirs = results[("pitwall", n)], results[("recreation", n)]
        name = f"gate → browser, 1 + {n} browsers"
        table.add(name, "to the first browser connected, p50 ms", ours["p50_ms"],
                  theirs["p50_ms"], "lower", "{:.2f}")
        table.add(name, "to the first browser connected, p99 ms", ours["p99_ms"],
                  theirs["p99_ms"], "lower", "{:.2f}")
        if n:
            table.add(name, "until every browser has it, p50 ms", ours["all_p50_ms"],
                      theirs["all_p50_ms"], "lower", "{:.2f}")
            table.add(name, "until every browser has it, p99 ms", ours["all_p99_ms"],
                      theirs["all_p99_ms"], "lower", "{:.2f}")


class Watcher:
    """frame_watch.py as a child talking over stdin/stdout."""

    def __init__(self, url, mode):
        self.proc = subprocess.Popen(
            [PYTHON, str(CLIENTS / "frame_watch.py"), "--url", url, mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError("frame_watch.py did not start")

    def finish(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.proc.wait(30)
        return json.loads(line)


def restart_to_first_frame(server, port, restarts):
    """SIGINT, start again, until a new client gets a frame; seconds per restart."""
    times = []
    for _ in range(restarts):
        probe = Watcher(f"ws://127.0.0.1:{port}/ws/9999", "--first-frame")
        started = time.time()
        server.stop()
        server.__enter__()
        at = probe.finish()["first_frame_at"]
        times.append(at - started)
        time.sleep(1.0)
    return times


def scenario_reload(args, work, table):
    """pitwall-flow: file edit -> new graph running; re-creation: restart -> serving."""
    results = {}
    # pitwall-flow: edits that add a recorder of the frames (and remove the previous one).
    port = common.free_port()
    file = write(work / "reload.toml", cardputer_pipeline(port))
    with Server(pitwall(file, watch=True), work / "reload-pitwall.log") as server:
        common.wait_port(port, 60, server.proc)
        watcher = Watcher(f"ws://127.0.0.1:{port}/ws/9999", "--watch")
        edits = []
        for k in range(args.restarts):
            recording = work / f"recorder-{k}.ndjson"
            extra = f"""
[sinks.recorder_{k}]
type = "file"
inputs = ["frames"]
path = "{recording}"
flush_every_ms = 0
"""
            started = time.time()
            file.write_text(cardputer_pipeline(port, extra))
            while not (recording.exists() and recording.stat().st_size > 0):
                if time.time() - started > 30:
                    raise RuntimeError("the edit was never applied (see reload-pitwall.log)")
                time.sleep(0.001)
            edits.append(time.time() - started)
            time.sleep(1.0)
        results["pitwall_edit_gap"] = watcher.finish()["max_gap_ms"]
        results["pitwall_edit"] = edits
        watcher = Watcher(f"ws://127.0.0.1:{port}/ws/9999", "--watch")
        results["pitwall_restart"] = restart_to_first_frame(server, port, args.restarts)
        results["pitwall_restart_gap"] = watcher.finish()["max_gap_ms"]
    port = common.free_port()
    with Server(pocket_pitwall(port), work / "reload-recreation.log") as server:
        common.wait_port(port, 120, server.proc)
        watcher = Watcher(f"ws://127.0.0.1:{port}/ws/9999", "--watch")
        results["recreation_restart"] = restart_to_first_frame(server, port, args.restarts)
        results["recreation_gap"] = watcher.finish()["max_gap_ms"]
    ms = {k: 1e3 * statistics.median(v) for k, v in results.items() if isinstance(v, list)}
    name = f"reload (median of {args.restarts})"
    table.add(name, "change applied → serving, ms (pitwall-flow: file edit; re-creation: restart)",
              ms["pitwall_edit"], ms["recreation_restart"], "lower", "{:.0f}")
    table.add(name, "longest pause at a connected Cardputer client, ms (same changes)",
              results["pitwall_edit_gap"], results["recreation_gap"], "lower", "{:.0f}")
    table.add(name, "restart → first frame to a new client, ms (both restarted)",
              ms["pitwall_restart"], ms["recreation_restart"], "lower", "{:.0f}")


def scenario_rf2(args, work, table):
    """rF2 player telemetry as JSON over WebSocket at 10 Hz to N clients."""
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
    buffers = Path(tempfile.mkdtemp(prefix="versus-rf2-", dir=shm))
    counts = [int(n) for n in args.clients.split(",")]
    results = {}
    try:
        with Server([PYTHON, str(CLIENTS / "rf2_game.py"), str(buffers)], work / "rf2-game.log"):
            time.sleep(1.0)
            for side in ("pitwall", "recreation"):
                port = common.free_port()
                if side == "pitwall":
                    # pipelines/rf2-websocket.toml with the buffers and the port changed.
                    text = (REPO / "pipelines" / "rf2-websocket.toml").read_text()
                    text = text.replace('dir = "/dev/shm"', f'dir = "{buffers}"')
                    text = text.replace("${RF2_WS_ADDRESS:-127.0.0.1:8080}", f"127.0.0.1:{port}")
                    # The sink's default limit is 256 clients.
                    text = text.replace('path = "/"', 'path = "/"\nmax_clients = 2048')
                    argv = pitwall(write(work / "rf2.toml", text))
                else:
                    argv = [PYTHON, str(RECREATIONS / "rf2" / "websocket_server.py"),
                            "--dir", str(buffers), "--host", "127.0.0.1", "--port", str(port)]
                with Server(argv, work / f"rf2-{side}.log") as server:
                    common.wait_port(port, 60, server.proc)
                    time.sleep(1.0)
                    for n in counts:
                        r = results[(side, n)] = run_json(
                            [PYTHON, str(CLIENTS / "ws_clients.py"),
                             "--url", f"ws://127.0.0.1:{port}/", "--count", str(n),
                             "--warmup", str(args.warmup), "--duration", str(args.duration),
                             "--pid", str(server.pid)])
                        if r["connected"] < n:
                            raise RuntimeError(f"{side}: {r['connected']} of {n} connected")
                        time.sleep(1.0)
    finally:
        shutil.rmtree(buffers, ignore_errors=True)
    for n in counts:
        ours, theirs = results[("pitwall", n)], results[("recreation", n)]
        name = f"rF2 JSON WebSocket, {n} clients"
        table.add(name, "server CPU, % of one core", ours["server_cpu_pct"],
                  theirs["server_cpu_pct"], "lower")
        table.add(name, "server RSS, MiB", ours["server_rss_kib"] / 1024,
                  theirs["server_rss_kib"] / 1024, "lower")
        table.add(name, "messages/s received per client (mean)", ours["rate_mean"],
                  theirs["rate_mean"], "higher", "{:.2f}")


# -- main ------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help=f"any of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--build", action="store_true", help="cargo build --release first")
    p.add_argument("--clients", default="100,1000", help="fanout: client counts")
    p.add_argument("--warmup", type=float, default=3.0, help="fanout: seconds before measuring")
    p.add_argument("--duration", type=float, default=10.0, help="fanout: seconds measured")
    p.add_argument("--repeat", type=int, default=3, help="replay, convert: runs per side")
    p.add_argument("--rigs", type=int, default=4, help="grpc: concurrent streams")
    p.add_argument("--grpc-frames", type=int, default=25_000, help="grpc: frames per rig")
    p.add_argument("--convert-frames", type=int, default=300_000,
                   help="convert: frames in the recording")
    p.add_argument("--browsers", default="100,0", help="gate: other browsers connected")
    p.add_argument("--gates", type=int, default=400, help="gate: gate messages timed")
    p.add_argument("--restarts", type=int, default=5, help="reload: edits / restarts per side")
    p.add_argument("--cache", type=Path, default=REPO / "target" / "versus",
                   help="where generated inputs are kept between runs")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args()
    chosen = args.scenarios or SCENARIOS
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    ensure_requirements()
    ensure_binary(args.build)
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    table = Table()
    work = Path(tempfile.mkdtemp(prefix="versus-", dir=args.cache))
    started = time.monotonic()
    failed = []
    try:
        for name in chosen:
            print(f"\n== {name}", flush=True)
            t0 = time.monotonic()
            try:
                globals()[f"scenario_{name}"](args, work, table)
            except Exception as error:  # one broken scenario must not hide the others
                failed.append(name)
                print(f"  FAILED: {error!r} (logs in {work})", flush=True)
            print(f"  ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        if not failed:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmachine: {machine()}")
    print(f"total: {time.monotonic() - started:.0f} s\n")
    print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps(table.rows, indent=1, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
