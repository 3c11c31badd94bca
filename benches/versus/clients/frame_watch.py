"""WebSocket frame watcher for the reload scenario, the same for both servers.

    python frame_watch.py --url ws://127.0.0.1:8000/ws/9999 --first-frame
        Prints READY, waits for a line on stdin, then tries to connect every 5 ms until a
        message arrives and prints its arrival time (time.time()) as JSON.
    python frame_watch.py --url ws://127.0.0.1:8000/ws/9999 --watch
        Stays connected (reconnecting every 5 ms when the server goes away), prints READY
        after the first message, and when a line arrives on stdin prints the longest pause
        between two messages and how often a connection that delivered messages was lost, as JSON.
"""

import argparse
import asyncio
import sys
import time

from websockets.asyncio.client import connect


async def first_frame(url):
    while True:
        try:
            async with connect(url, compression=None, ping_interval=None, open_timeout=5) as ws:
                await ws.recv()
                return time.time()
        except (OSError, asyncio.TimeoutError, Exception):
            await asyncio.sleep(0.005)


async def watch(url, state):
    while True:
        had = state["messages"]
        try:
            async with connect(url, compression=None, ping_interval=None, open_timeout=5) as ws:
                async for _ in ws:
                    now = time.monotonic()
                    if state["last"] is not None:
                        state["max_gap"] = max(state["max_gap"], now - state["last"])
                    else:
                        print("READY", flush=True)
                    state["last"] = now
                    state["messages"] += 1
        except Exception:
            pass
        if state["messages"] > had:
            state["reconnects"] += 1
        await asyncio.sleep(0.005)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--first-frame", action="store_true")
    p.add_argument("--watch", action="store_true")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    if args.first_frame:
        print("READY", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        at = await first_frame(args.url)
        print(f'{{"first_frame_at": {at!r}}}', flush=True)
        return
    state = {"last": None, "max_gap": 0.0, "messages": 0, "reconnects": 0}
    task = asyncio.create_task(watch(args.url, state))
    await loop.run_in_executor(None, sys.stdin.readline)
    task.cancel()
    print(
        f'{{"max_gap_ms": {state["max_gap"] * 1e3!r}, "messages": {state["messages"]}, '
        f'"reconnects": {state["reconnects"]}}}',
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
