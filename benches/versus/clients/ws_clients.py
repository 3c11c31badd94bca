"""N WebSocket clients that read everything a server sends, the same for both servers.

    python ws_clients.py --url ws://127.0.0.1:8000/ws/9999 --count 100 --warmup 3 --duration 10 --pid PID

Connects `count` clients (no compression: the Cardputer firmware offers none; no pings),
waits `warmup` seconds, then counts the messages every client receives for `duration`
seconds while sampling the CPU time and RSS of the server process `pid`. Prints one JSON
object. With --hold it only connects, prints READY and reads until a line arrives on stdin
(the other browsers of the gate-latency scenario); with --stamp TEXT it then prints, per
client, the arrival times (time.monotonic(), comparable between processes) of the messages
containing TEXT.
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from websockets.asyncio.client import connect  # noqa: E402

import common  # noqa: E402


class Client:
    def __init__(self):
        self.count = 0
        self.first_ms = None
        self.closed = False
        self.stamps = []


async def run_client(url, client, connected, started, stamp=None):
    try:
        async with connect(
            url, compression=None, ping_interval=None, max_queue=None, open_timeout=60
        ) as ws:
            if not connected.done():
                connected.set_result(True)
            async for message in ws:
                if stamp is not None and stamp in message:
                    client.stamps.append(time.monotonic())
                if client.first_ms is None:
                    client.first_ms = (time.monotonic() - started) * 1e3
                client.count += 1
    except Exception as error:  # a refused or dropped client is counted, not fatal
        if not connected.done():
            connected.set_exception(error)
    client.closed = True


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--pid", type=int)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--hold", action="store_true")
    p.add_argument("--stamp")
    args = p.parse_args()

    clients = [Client() for _ in range(args.count)]
    tasks = []
    failed = 0
    loop = asyncio.get_running_loop()
    connect_started = time.monotonic()
    for start in range(0, args.count, args.concurrency):
        waits = []
        for client in clients[start : start + args.concurrency]:
            connected = loop.create_future()
            tasks.append(
                asyncio.create_task(
                    run_client(args.url, client, connected, time.monotonic(), args.stamp)
                )
            )
            waits.append(connected)
        for result in await asyncio.gather(*waits, return_exceptions=True):
            if isinstance(result, BaseException):
                failed += 1
    connect_s = time.monotonic() - connect_started
    if args.hold:
        print("READY", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        common.emit({"failed": failed, "stamps": [c.stamps for c in clients]})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return

    await asyncio.sleep(args.warmup)
    before = [c.count for c in clients]
    cpu0 = common.cpu_seconds(args.pid) if args.pid else 0.0
    t0 = time.monotonic()
    rss_samples = []
    while time.monotonic() - t0 < args.duration:
        await asyncio.sleep(0.5)
        if args.pid:
            rss_samples.append(common.memory_kib(args.pid)[0])
    window = time.monotonic() - t0
    cpu1 = common.cpu_seconds(args.pid) if args.pid else 0.0
    rates = [(c.count - b) / window for c, b in zip(clients, before)]
    alive = [c for c in clients if not c.closed]
    firsts = [c.first_ms for c in clients if c.first_ms is not None]
    common.emit(
        {
            "clients": args.count,
            "connected": args.count - failed,
            "alive": len(alive),
            "connect_s": connect_s,
            "window_s": window,
            "rate_mean": sum(rates) / len(rates) if rates else 0.0,
            "rate_p01": common.percentile(rates, 0.01),
            "server_cpu_s": cpu1 - cpu0,
            "server_cpu_pct": 100.0 * (cpu1 - cpu0) / window,
            "server_rss_kib": max(rss_samples) if rss_samples else 0,
            "first_frame_ms_p50": common.percentile(firsts, 0.5),
        }
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
