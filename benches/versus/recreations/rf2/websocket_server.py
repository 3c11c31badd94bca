# RE-CREATION for benchmarking, NOT the original code. It re-creates the behaviour described
# for the rFactor 2 WebSocket server (Python, `websockets`): SimInfo reads the rF2 Shared
# Memory Map Plugin's telemetry and scoring buffers, find_player_vehicle() finds the player's
# car in scoring, find_player_telemetry() its telemetry by mID, and every client gets one JSON
# object per tick. Written for pitwall-flow's side-by-side benchmark (benches/versus).
#
#     python websocket_server.py [--dir /dev/shm] [--host localhost] [--port 8080]
#
# On Windows the original opens the plugin's named mappings; this re-creation reads the
# files a Linux bridge exposes under the same names. Its README says one message a second,
# its code ticks at 10 Hz (FORMATS.md section 6); TICK_S follows the code.

import argparse
import asyncio
import json
import mmap
import os
import struct

import websockets

TICK_S = 0.1
TELEMETRY = "$rFactor2SMMP_Telemetry$"
SCORING = "$rFactor2SMMP_Scoring$"
T_VEHICLES, T_VEHICLE_SIZE = 16, 1888
S_INFO, S_VEHICLES, S_VEHICLE_SIZE = 12, 560, 584


def c_string(buf, at, length):
    return bytes(buf[at : at + length]).split(b"\0", 1)[0].decode("latin-1")


class SimInfo:
    def __init__(self, directory):
        self.directory = directory
        self.telemetry = None
        self.scoring = None

    def connect(self):
        try:
            self.telemetry = self._map(TELEMETRY)
            self.scoring = self._map(SCORING)
            return True
        except OSError:
            return False

    def _map(self, name):
        with open(os.path.join(self.directory, name), "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    @staticmethod
    def _settled(buf):
        """The mapping itself, once the game is not in the middle of a write (begin == end).
        Fields are read straight from the mapping, as the usual Python rF2 readers do."""
        for _ in range(10):
            begin, end = struct.unpack_from("<II", buf, 0)
            if begin == end:
                break
        return buf

    def find_player_vehicle(self, scoring):
        count = struct.unpack_from("<i", scoring, S_INFO + 104)[0]
        for i in range(min(count, 128)):
            base = S_VEHICLES + i * S_VEHICLE_SIZE
            if scoring[base + 196] == 1:
                return base
        return None

    def find_player_telemetry(self, telemetry, vehicle_id):
        count = struct.unpack_from("<i", telemetry, 12)[0]
        for i in range(min(count, 128)):
            base = T_VEHICLES + i * T_VEHICLE_SIZE
            if struct.unpack_from("<i", telemetry, base)[0] == vehicle_id:
                return base
        return None

    def get_telemetry_data(self):
        if self.telemetry is None and not self.connect():
            return {"status": "no_player_vehicle_found"}
        scoring = self._settled(self.scoring)
        telemetry = self._settled(self.telemetry)
        player = self.find_player_vehicle(scoring)
        if player is None:
            return {"status": "no_player_vehicle_found"}
        vehicle_id = struct.unpack_from("<i", scoring, player)[0]
        tele = self.find_player_telemetry(telemetry, vehicle_id)
        if tele is None:
            return {"status": "no_player_vehicle_found"}
        return {
            "driverName": c_string(scoring, player + 4, 32),
            "vehicleName": c_string(scoring, player + 36, 64),
            "trackName": c_string(scoring, S_INFO, 64),
            "place": scoring[player + 199],
            "gear": struct.unpack_from("<i", telemetry, tele + 352)[0],
            "brake": struct.unpack_from("<d", telemetry, tele + 428)[0],
            "throttle": struct.unpack_from("<d", telemetry, tele + 420)[0],
            "session": struct.unpack_from("<i", scoring, S_INFO + 64)[0],
        }


class RF2WebSocketServer:
    def __init__(self, host="localhost", port=8080, directory="/dev/shm"):
        self.host, self.port = host, port
        self.sim = SimInfo(directory)

    async def handler(self, websocket):
        try:
            while True:
                await websocket.send(json.dumps(self.sim.get_telemetry_data()))
                await asyncio.sleep(TICK_S)
        except websockets.ConnectionClosed:
            pass

    async def run(self):
        async with websockets.serve(self.handler, self.host, self.port):
            await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    asyncio.run(RF2WebSocketServer(args.host, args.port, args.dir).run())
