"""Sim rigs streaming telemetry.v1 frames over gRPC, the same for both ingest servers.

    python grpc_rigs.py --address 127.0.0.1:50051 --rigs 4 --frames 50000 [--pid PID]

Each rig opens its own TCP connection and one StreamFrames call (gRPC over cleartext
HTTP/2, spoken with the `h2` library) and sends `frames` frames as fast as the server's
flow control lets it, reading one StreamAck per frame. Python's own gRPC client needs more
CPU per message than the servers under test (about 130 us), so this generator packs many
length-prefixed gRPC messages into each HTTP/2 DATA frame and encodes each rig's frame once,
changing only monotonic_ns: it spends a few microseconds per frame and can out-run both
servers. The servers see ordinary gRPC messages. Prints one JSON object: frames acked,
seconds, frames/s and, with --pid, the server's CPU seconds. Needs the telemetry.v1 stubs
on the Python path (frames.py builds the frame).
"""

import argparse
import asyncio
import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

import common  # noqa: E402
from frames import frame, varint  # noqa: E402

PATH = b"/telemetry.v1.TelemetryIngest/StreamFrames"
RECEIVE_WINDOW = 1 << 24


class Rig:
    def __init__(self, host, port, session, count):
        self.host, self.port, self.session, self.count = host, port, session, count
        self.acks = 0
        self.last_ack_ns = 0
        self.status = None
        self.window_open = asyncio.Event()
        self.finished = asyncio.Event()
        self.pending = b""

    def on_events(self, conn, events):
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.pending += event.data
                self.count_acks()
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self.window_open.set()
            elif isinstance(event, h2.events.TrailersReceived):
                self.status = dict(event.headers).get(b"grpc-status")
            elif isinstance(event, h2.events.ResponseReceived):
                self.status = dict(event.headers).get(b"grpc-status", self.status)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset,
                                    h2.events.ConnectionTerminated)):
                self.finished.set()

    def count_acks(self):
        data, at = self.pending, 0
        while len(data) - at >= 5:
            (length,) = struct.unpack_from(">I", data, at + 1)
            if len(data) - at < 5 + length:
                break
            body = data[at + 5 : at + 5 + length]
            self.acks += 1
            if body[:1] == b"\x08":
                self.last_ack_ns = decode_varint(body, 1)
            at += 5 + length
        self.pending = data[at:]

    async def run(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW}
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(RECEIVE_WINDOW)
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", PATH),
                (b":authority", f"{self.host}:{self.port}".encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ],
        )
        writer.write(conn.data_to_send())

        async def read_loop():
            while not self.finished.is_set():
                data = await reader.read(1 << 16)
                if not data:
                    self.finished.set()
                    break
                self.on_events(conn, conn.receive_data(data))
                out = conn.data_to_send()
                if out:
                    writer.write(out)

        reading = asyncio.create_task(read_loop())
        template = frame(self.session, 0)
        template.ClearField("monotonic_ns")
        rest = template.SerializeToString()
        message_len = 5 + 1 + len(varint(self.count * 3_003_003)) + len(rest)
        sent = 0
        while sent < self.count and not self.finished.is_set():
            room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            n = min(self.count - sent, room // message_len)
            if n == 0:
                self.window_open.clear()
                await self.window_open.wait()
                continue
            parts = []
            for i in range(sent + 1, sent + n + 1):
                body = b"\x08" + varint(i * 3_003_003) + rest
                parts.append(b"\x00" + struct.pack(">I", len(body)) + body)
            conn.send_data(stream, b"".join(parts))
            sent += n
            writer.write(conn.data_to_send())
            await writer.drain()
        conn.end_stream(stream)
        writer.write(conn.data_to_send())
        await self.finished.wait()
        reading.cancel()
        writer.close()
        return sent


def decode_varint(data, at):
    value = shift = 0
    while at < len(data):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            break
        shift += 7
    return value


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--rigs", type=int, default=4)
    p.add_argument("--frames", type=int, default=50000)
    p.add_argument("--pid", type=int)
    args = p.parse_args()
    host, port = args.address.rsplit(":", 1)

    rigs = [Rig(host, int(port), f"rig-{n}", args.frames) for n in range(args.rigs)]
    cpu0 = common.cpu_seconds(args.pid) if args.pid else 0.0
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(r.run() for r in rigs)), 600)
    elapsed = time.perf_counter() - started
    cpu1 = common.cpu_seconds(args.pid) if args.pid else 0.0
    acks = sum(r.acks for r in rigs)
    common.emit(
        {
            "rigs": args.rigs,
            "frames_sent": args.rigs * args.frames,
            "acks": acks,
            "all_acked": all(r.last_ack_ns == args.frames * 3_003_003 for r in rigs),
            "grpc_status": sorted({(r.status or b"?").decode() for r in rigs}),
            "seconds": elapsed,
            "frames_per_s": acks / elapsed,
            "server_cpu_s": cpu1 - cpu0,
            "client_cpu_s": time.process_time(),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
