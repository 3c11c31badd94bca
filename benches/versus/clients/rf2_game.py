"""A stand-in for rFactor 2 with the Shared Memory Map Plugin, for the rf2 scenario: writes
`$rFactor2SMMP_Telemetry$` (about 90 Hz) and `$rFactor2SMMP_Scoring$` (5 Hz) as files in a
directory, the way a Linux bridge exposes the plugin's mappings (FORMATS.md section 6):
#pragma pack(4) little-endian structs behind the {mVersionUpdateBegin, mVersionUpdateEnd}
version block, 20 cars of which one is the player's. Runs until killed.

    python rf2_game.py DIR [--cars 20] [--hz 90]
"""

import argparse
import math
import mmap
import os
import struct
import time

TELEMETRY_SIZE = 16 + 128 * 1888
SCORING_SIZE = 560 + 128 * 584
T_VEHICLE, T_SIZE = 16, 1888
S_INFO, S_VEHICLE, S_SIZE = 12, 560, 584


def mapped(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    fd = os.open(path, os.O_RDWR)
    m = mmap.mmap(fd, size)
    os.close(fd)
    return m


def text(buf, at, value, length):
    data = value.encode()[: length - 1]
    buf[at : at + length] = data + b"\0" * (length - len(data))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--cars", type=int, default=20)
    p.add_argument("--hz", type=float, default=90.0)
    args = p.parse_args()
    telemetry = mapped(os.path.join(args.dir, "$rFactor2SMMP_Telemetry$"), TELEMETRY_SIZE)
    scoring = mapped(os.path.join(args.dir, "$rFactor2SMMP_Scoring$"), SCORING_SIZE)
    version_t = version_s = 0
    started = time.monotonic()
    tick = 0
    while True:
        et = time.monotonic() - started
        # Telemetry: the version block brackets the write.
        version_t += 1
        struct.pack_into("<I", telemetry, 0, version_t)
        struct.pack_into("<i", telemetry, 12, args.cars)
        for car in range(args.cars):
            base = T_VEHICLE + car * T_SIZE
            phase = et / 90.0 + car / args.cars
            struct.pack_into("<i", telemetry, base, 100 + car)
            struct.pack_into("<d", telemetry, base + 4, 1 / args.hz)
            struct.pack_into("<d", telemetry, base + 12, et)
            struct.pack_into("<i", telemetry, base + 20, int(phase) + 1)
            text(telemetry, base + 32, f"Car #{car + 1}", 64)
            text(telemetry, base + 96, "Monza", 64)
            struct.pack_into("<3d", telemetry, base + 160, 500 * math.cos(phase * 6.28), 0.0,
                             500 * math.sin(phase * 6.28))
            struct.pack_into("<i", telemetry, base + 352, 1 + (tick // 200 + car) % 6)
            struct.pack_into("<d", telemetry, base + 356, 6000 + 1500 * math.sin(et + car))
            struct.pack_into("<d", telemetry, base + 420, 0.5 + 0.5 * math.sin(et + car))
            struct.pack_into("<d", telemetry, base + 428, max(0.0, -math.sin(et + car)))
            struct.pack_into("<d", telemetry, base + 532, 8000.0)
        struct.pack_into("<I", telemetry, 4, version_t)
        if tick % max(1, int(args.hz / 5)) == 0:
            version_s += 1
            struct.pack_into("<I", scoring, 0, version_s)
            text(scoring, S_INFO, "Monza", 64)
            struct.pack_into("<i", scoring, S_INFO + 64, 10)
            struct.pack_into("<d", scoring, S_INFO + 68, et)
            struct.pack_into("<d", scoring, S_INFO + 88, 5793.0)
            struct.pack_into("<i", scoring, S_INFO + 104, args.cars)
            scoring[S_INFO + 108] = 5
            scoring[S_INFO + 115] = 1
            text(scoring, S_INFO + 116, "Player One", 32)
            for car in range(args.cars):
                base = S_VEHICLE + car * S_SIZE
                struct.pack_into("<i", scoring, base, 100 + car)
                text(scoring, base + 4, "Player One" if car == 0 else f"Driver {car + 1}", 32)
                text(scoring, base + 36, f"Car #{car + 1}", 64)
                struct.pack_into("<h", scoring, base + 100, int(et / 90.0))
                struct.pack_into("<d", scoring, base + 104, 5793.0 * ((et / 90.0 + car / 20) % 1))
                scoring[base + 196] = 1 if car == 0 else 0
                scoring[base + 199] = car + 1
            struct.pack_into("<I", scoring, 4, version_s)
        tick += 1
        time.sleep(max(0.0, started + tick / args.hz - time.monotonic()))


if __name__ == "__main__":
    main()
