"""Assetto Corsa telemetry frames as the bridge sends them (all three pages, ~300 bytes),
for the gRPC load generator and the recording generator. Needs the telemetry.v1 stubs."""

import math
import random

from telemetry.v1 import telemetry_pb2 as pb


def frame(session, i, noise=None):
    """Frame `i` of a rig: 333 frames per second of a car driving round a 90 s lap.

    `noise` (a random.Random) adds sensor noise to the floats, so that a recording
    compresses like real telemetry instead of like a constant."""
    t = i * 0.003003
    n = noise.random if noise is not None else (lambda: 0.5)
    f = pb.TelemetryFrame(monotonic_ns=i * 3_003_003, game="assetto_corsa", session_id=session)
    ph = f.physics
    ph.speed_kmh = 180.0 + 60.0 * math.sin(t / 7.0) + 0.2 * n()
    ph.gas = 0.5 + 0.5 * math.sin(t)
    ph.brake = max(0.0, -math.sin(t))
    ph.clutch = 0.0
    ph.gear = 2 + (i // 2000) % 6
    ph.steer = 0.3 * math.sin(t / 3.0) + 0.01 * n()
    ph.engine_rpm = 6000.0 + 1500.0 * math.sin(t / 2.0) + 20.0 * n()
    for wheel, base in ((ph.tyre_slip, 0.1), (ph.tyre_load, 3000.0), (ph.tyre_temp_c, 85.0),
                        (ph.suspension_travel, 0.02)):
        wheel.fl = base * (0.95 + 0.1 * n())
        wheel.fr = base * (0.96 + 0.1 * n())
        wheel.rl = base * (0.97 + 0.1 * n())
        wheel.rr = base * (0.98 + 0.1 * n())
    ph.acc_g.x, ph.acc_g.y, ph.acc_g.z = 0.3 * math.sin(t) + 0.05 * n(), 1.0 + 0.02 * n(), 0.1 * n()
    ph.velocity.x, ph.velocity.y, ph.velocity.z = 12.0 + n(), 0.1 * n(), 48.0 + n()
    ph.angular_velocity.x, ph.angular_velocity.y, ph.angular_velocity.z = 0.01 * n(), 0.2 * n(), 0.01 * n()
    g = f.graphics
    g.status = 2
    g.completed_laps = int(t // 90.0)
    g.position = 2
    g.i_current_time_s = t % 90.0
    g.i_last_time_s = 90.3
    g.i_best_time_s = 89.9
    g.lap_time_s = t % 90.0
    g.delta_lap_s = 0.2
    g.normalized_car_pos = (t % 90.0) / 90.0
    s = f.stat
    s.car_model = "ks_ferrari_488_gt3"
    s.track = "monza"
    s.track_configuration = ""
    s.max_rpm = 8000
    return f


def varint(value):
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)
