# RE-CREATION for benchmarking, NOT the original code. It re-creates the behaviour described
# for the Assetto Corsa project's tools/recorder_reader.py: read a gzipped stream of
# varint-length-delimited telemetry.v1 TelemetryFrame messages (tolerating a truncated tail)
# and write a tidy Parquet file with pyarrow, sorted by t_ns. Written for pitwall-flow's
# side-by-side benchmark (benches/versus).
#
#     python recorder_reader.py telemetry_record.pb.gz out.parquet
#
# Needs the generated stubs (telemetry/v1/telemetry_pb2.py) on the Python path.

import argparse
import gzip
import sys
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

from telemetry.v1 import telemetry_pb2

COLUMNS = [
    "t_ns", "game", "session", "speed_kmh", "gas", "brake", "gear", "steer", "rpm",
    "ax_g", "ay_g", "az_g", "lap", "pos",
]


def read_varint(stream):
    """The next varint, or None at a clean end of the stream."""
    shift = 0
    result = 0
    while True:
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise EOFError("truncated varint")
        byte = b[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7


def read_frames(path):
    """Yield every complete TelemetryFrame; a partial last record ends the read quietly."""
    with gzip.open(path, "rb") as stream:
        while True:
            try:
                size = read_varint(stream)
                if size is None:
                    return
                data = stream.read(size)
            except (EOFError, zlib.error) as error:
                print(f"warning: truncated recording ({error}); keeping complete frames",
                      file=sys.stderr)
                return
            if len(data) < size:
                print("warning: truncated last frame ignored", file=sys.stderr)
                return
            frame = telemetry_pb2.TelemetryFrame()
            frame.ParseFromString(data)
            yield frame


def convert(src, dst):
    cols = {name: [] for name in COLUMNS}
    for f in read_frames(src):
        p, g = f.physics, f.graphics
        cols["t_ns"].append(f.monotonic_ns)
        cols["game"].append(f.game)
        cols["session"].append(f.session_id)
        cols["speed_kmh"].append(p.speed_kmh)
        cols["gas"].append(p.gas)
        cols["brake"].append(p.brake)
        cols["gear"].append(p.gear)
        cols["steer"].append(p.steer)
        cols["rpm"].append(p.engine_rpm)
        cols["ax_g"].append(p.acc_g.x)
        cols["ay_g"].append(p.acc_g.y)
        cols["az_g"].append(p.acc_g.z)
        cols["lap"].append(g.completed_laps)
        cols["pos"].append(g.position)
    schema = pa.schema(
        [
            ("t_ns", pa.uint64()), ("game", pa.string()), ("session", pa.string()),
            ("speed_kmh", pa.float32()), ("gas", pa.float32()), ("brake", pa.float32()),
            ("gear", pa.int32()), ("steer", pa.float32()), ("rpm", pa.float32()),
            ("ax_g", pa.float32()), ("ay_g", pa.float32()), ("az_g", pa.float32()),
            ("lap", pa.int32()), ("pos", pa.int32()),
        ]
    )
    table = pa.table(cols, schema=schema)
    table = table.sort_by("t_ns")
    pq.write_table(table, dst, compression="snappy")
    return table.num_rows


def main():
    parser = argparse.ArgumentParser(description="Convert a .pb.gz recording to Parquet")
    parser.add_argument("input")
    parser.add_argument("output")
    args = parser.parse_args()
    rows = convert(args.input, args.output)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
