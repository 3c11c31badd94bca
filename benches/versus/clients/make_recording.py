"""Write a .pb.gz recording (the AC bridge's format: one gzip stream of varint-length-
delimited telemetry.v1 TelemetryFrame messages) as input of the conversion scenario.

    python make_recording.py OUT.pb.gz --frames 300000 [--rigs 2]

Frames of `rigs` sessions are interleaved as several rigs recorded into one file would be.
Needs the telemetry.v1 stubs on the Python path.
"""

import argparse
import gzip
import random
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from frames import frame, varint  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--rigs", type=int, default=2)
    args = p.parse_args()
    tmp = args.out + ".part"
    with gzip.open(tmp, "wb", compresslevel=6) as out:
        chunk = []
        noise = random.Random(7)
        for i in range(args.frames):
            body = frame(f"rig-{i % args.rigs}", i // args.rigs, noise).SerializeToString()
            chunk.append(varint(len(body)) + body)
            if len(chunk) == 4096:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
