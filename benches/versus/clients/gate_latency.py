"""Light gate to browser latency, the same for both race-control servers.

    python gate_latency.py --ws ws://127.0.0.1:8000/ws --broker-port 1883 --browsers 100 --gates 400

Connects the measuring browser first, then `browsers` other browsers in a separate process
(ws_clients.py --hold, reading everything as pages do), sends `start`, waits for
`start_race`, then publishes `gates` light-gate messages (QoS 0, empty payload, lanes 1 and
2 in turn, 5 ms apart) and times each from the publish call to the `lap_finish` message at
the measuring browser, and to the moment the last of all browsers has it (arrival times
are time.monotonic(), one clock for every process). Prints one JSON object with the
latencies in ms.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import aiomqtt  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

import common  # noqa: E402


async def wait_for(ws, kind, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.wait_for(ws.recv(), max(0.001, deadline - time.monotonic()))
        if json.loads(text).get("type") == kind:
            return


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ws", required=True)
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--browsers", type=int, default=100)
    p.add_argument("--gates", type=int, default=400)
    args = p.parse_args()

    deadline = time.monotonic() + 60
    while True:
        try:
            ws = await connect(args.ws, compression=None, ping_interval=None, max_queue=None)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    others = None
    if args.browsers:
        others = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "ws_clients.py"),
                "--url",
                args.ws,
                "--count",
                str(args.browsers),
                "--hold",
                "--stamp",
                '"lap_finish"',
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if others.stdout.readline().strip() != "READY":
            raise RuntimeError("the other browsers did not connect")
    try:
        async with aiomqtt.Client("127.0.0.1", port=args.broker_port) as gate:
            # paho leaves Nagle on; a gate message must not wait for the previous one's ACK.
            gate._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.sleep(0.2)
            await ws.send("reset")
            await wait_for(ws, "reset")
            await ws.send("start")
            await wait_for(ws, "start_race")
            await asyncio.sleep(0.2)
            latencies = []
            sent_at, received_at = [], []
            for i in range(args.gates):
                await asyncio.sleep(0.005)
                lane = 1 + i % 2
                sent = time.monotonic()
                await gate.publish(f"carrera/track{lane}/finish", payload=b"", qos=0)
                await wait_for(ws, "lap_finish")
                now = time.monotonic()
                latencies.append((now - sent) * 1e3)
                sent_at.append(sent)
                received_at.append(now)
            await asyncio.sleep(0.5)
            await ws.send("stop")
            await wait_for(ws, "race_finished")
        every = latencies
        if others is not None:
            others.stdin.write("done\n")
            others.stdin.flush()
            stamps = json.loads(others.stdout.readline())["stamps"]
            if any(len(s) != args.gates for s in stamps):
                counts = sorted({len(s) for s in stamps})
                raise RuntimeError(f"other browsers got {counts} lap_finish, not {args.gates}")
            every = [
                (max([received_at[i]] + [s[i] for s in stamps]) - sent_at[i]) * 1e3
                for i in range(args.gates)
            ]
    finally:
        if others is not None and others.poll() is None:
            others.kill()
        if others is not None:
            others.wait()
        await ws.close()
    common.emit(
        {
            "gates": len(latencies),
            "browsers": args.browsers,
            "p50_ms": common.percentile(latencies, 0.5),
            "p99_ms": common.percentile(latencies, 0.99),
            "max_ms": max(latencies),
            "all_p50_ms": common.percentile(every, 0.5),
            "all_p99_ms": common.percentile(every, 0.99),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
