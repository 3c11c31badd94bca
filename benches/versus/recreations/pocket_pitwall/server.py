# RE-CREATION for benchmarking, NOT the original code. It re-creates the behaviour described
# for the Pocket Pitwall Data Service's server.py (FastAPI + pandas): it loads a cached
# OpenF1 session, resamples every car to a 100 ms grid, formats the compact pipe-delimited
# frames, serves the session documents over REST and streams the frames over a WebSocket
# every 100 ms. Written for pitwall-flow's side-by-side benchmark (benches/versus).
#
#     python server.py --data-dir DIR [--host 127.0.0.1] [--port 8000]
#     python server.py --data-dir DIR --prepare-only        (load, build frames, exit)
#
# DIR holds race_data_{session_key}/ folders in the OpenF1 cache layout that pitwall-flow's
# `openf1` source reads (the original kept its own CSV cache; see benches/versus/README.md).

import argparse
import asyncio
import gzip
import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pandas as pd
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

FRAME_INTERVAL_S = 0.1
FINISHED_INTERVAL_S = 1.0
LEAD_IN_S = 20.0
MAX_LAYOUT_POINTS = 300

SESSIONS = {}


def read_json(path):
    """A cache document: `name.json` or `name.json.gz`."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return json.load(f)
    if path.exists():
        with open(path, "rb") as f:
            return json.load(f)
    gz = path.with_name(path.name + ".gz")
    with gzip.open(gz, "rb") as f:
        return json.load(f)


def read_frame(path):
    data = read_json(path)
    df = pd.DataFrame.from_records(data)
    if "date" in df.columns:
        df["date"] = pd.to_datetime(df["date"], format="ISO8601", utc=True)
    return df


def thin(points, max_points):
    if len(points) <= max_points:
        return points
    step = len(points) / max_points
    return [points[int(i * step)] for i in range(max_points)]


class Session:
    def __init__(self, session_key, folder):
        self.session_key = str(session_key)
        self.folder = Path(folder)
        self.documents = {}
        self.frames = []
        self.last_t_ms = 0

    # -- loading -------------------------------------------------------------------------

    def load(self):
        folder = self.folder
        drivers = read_json(folder / "drivers.json")
        sessions = read_json(folder / "sessions.json")
        laps = read_frame(folder / "laps.json")
        grid = read_frame(folder / "starting_grid.json")
        positions = read_frame(folder / "position.json")
        results = read_json(folder / "session_result.json")
        stints = read_json(folder / "stints.json")
        intervals = read_json(folder / "intervals.json")

        # Reference start: the pole sitter's lap-1 start minus 20 s.
        pole = int(grid.sort_values("position").iloc[0]["driver_number"])
        laps["date_start"] = pd.to_datetime(laps["date_start"], format="ISO8601", utc=True)
        lap1 = laps[(laps["driver_number"] == pole) & (laps["lap_number"] == 1)]
        reference_start = lap1["date_start"].iloc[0] - pd.Timedelta(seconds=LEAD_IN_S)

        # Driver metadata and static documents.
        self.documents["drivers"] = drivers
        self.documents["session_info"] = sessions[0] if sessions else {}
        self.documents["session_result"] = results
        self.documents["laps"] = json.loads(laps.to_json(orient="records", date_format="iso"))
        self.documents["stints"] = stints
        self.documents["intervals"] = intervals
        self.documents["positions"] = json.loads(
            positions.to_json(orient="records", date_format="iso")
        )
        self.documents["starting_grid"] = json.loads(grid.to_json(orient="records"))
        self.documents["race_metadata"] = self.race_metadata(laps, results, reference_start)

        # Positions of every car on a 100 ms grid.
        location = {}
        for path in sorted((folder / "location").iterdir()):
            df = read_frame(path)
            if df.empty:
                continue
            location[int(df["driver_number"].iloc[0])] = df
        end = max(df["date"].max() for df in location.values())
        grid_index = pd.date_range(reference_start, end, freq=f"{int(FRAME_INTERVAL_S * 1000)}ms")
        t_ms = ((grid_index - reference_start) / pd.Timedelta(milliseconds=1)).astype("int64")

        self.documents["track_layout"] = self.track_layout(location, laps)

        columns = []
        for driver, df in sorted(location.items()):
            xy = self.resample(df, grid_index)
            place = self.place(positions, driver, grid_index)
            ok = xy["x"].notna() & xy["y"].notna()
            text = (
                f"{driver},"
                + xy["x"].round().astype("Int64").astype(str)
                + ","
                + xy["y"].round().astype("Int64").astype(str)
                + ","
                + place.astype(str)
            )
            columns.append(text.where(ok, None).tolist())

        self.frames = [
            f"{t}|" + "|".join(car for car in cars if car is not None)
            for t, cars in zip(t_ms.tolist(), zip(*columns))
        ]
        self.last_t_ms = int(t_ms[-1]) if len(t_ms) else 0
        return self

    @staticmethod
    def resample(df, grid_index):
        """x/y of one car interpolated in time onto the grid."""
        xy = (
            df[["date", "x", "y"]]
            .dropna()
            .drop_duplicates("date")
            .set_index("date")
            .sort_index()
            .astype("float64")
        )
        combined = xy.reindex(xy.index.union(grid_index))
        combined = combined.interpolate(method="time", limit_area="inside")
        return combined.reindex(grid_index)

    @staticmethod
    def place(positions, driver, grid_index):
        """The car's last known race position at each grid time (0 when unknown)."""
        mine = positions[positions["driver_number"] == driver][["date", "position"]]
        mine = mine.sort_values("date")
        ticks = pd.DataFrame({"date": grid_index})
        merged = pd.merge_asof(ticks, mine, on="date", direction="backward")
        return merged["position"].fillna(0).astype("int64").set_axis(grid_index)

    def track_layout(self, location, laps):
        circuit = self.folder / "circuit_info.json"
        if circuit.exists():
            with open(circuit, "rb") as f:
                info = json.load(f)
            path = [{"x": x, "y": y} for x, y in zip(info["x"], info["y"])]
        else:
            # The fastest lap's driven line.
            best = laps.dropna(subset=["lap_duration"]).sort_values("lap_duration").iloc[0]
            df = location[int(best["driver_number"])]
            start = best["date_start"]
            end = start + pd.Timedelta(seconds=float(best["lap_duration"]))
            lap = df[(df["date"] >= start) & (df["date"] <= end)]
            path = [{"x": int(x), "y": int(y)} for x, y in zip(lap["x"], lap["y"])]
        path = thin(path, MAX_LAYOUT_POINTS)
        xs = [p["x"] for p in path] or [0]
        ys = [p["y"] for p in path] or [0]
        thirds = [path[0], path[len(path) // 3], path[2 * len(path) // 3]] if path else []
        names = ["Start/Finish", "Sector 1 End", "Sector 2 End"]
        return {
            "track_path": path,
            "pit_path": [],
            "sector_points": [{"id": n, **p} for n, p in zip(names, thirds)],
            "bounds": {"min_x": min(xs), "max_x": max(xs), "min_y": min(ys), "max_y": max(ys)},
        }

    def race_metadata(self, laps, results, reference_start):
        ordered = sorted(
            (r for r in results if r.get("position") is not None), key=lambda r: r["position"]
        )
        timed = laps.dropna(subset=["lap_duration"])
        fastest = None
        if not timed.empty:
            best = timed.sort_values("lap_duration").iloc[0]
            fastest = {
                "driver_number": int(best["driver_number"]),
                "lap_number": int(best["lap_number"]),
                "lap_time": float(best["lap_duration"]),
                "sector_1": best.get("duration_sector_1"),
                "sector_2": best.get("duration_sector_2"),
                "sector_3": best.get("duration_sector_3"),
            }
        return {
            "session_key": int(self.session_key),
            "reference_start_time": reference_start.isoformat(),
            "race_winner": ordered[0]["driver_number"] if ordered else None,
            "podium_drivers": [r["driver_number"] for r in ordered[:3]],
            "fastest_lap": fastest,
        }


def load_sessions(data_dir):
    for folder in sorted(Path(data_dir).glob("race_data_*")):
        key = folder.name.removeprefix("race_data_")
        SESSIONS[key] = Session(key, folder).load()
    return SESSIONS


@asynccontextmanager
async def lifespan(app):
    # `uvicorn server:app` loads the sessions here; `python server.py` already did.
    if not SESSIONS:
        load_sessions(os.environ.get("POCKET_PITWALL_DATA", "race_data"))
    yield


app = FastAPI(title="Pocket Pitwall Data Service (re-creation)", lifespan=lifespan)


@app.get("/session/{session_key}/{name}")
async def document(session_key: str, name: str):
    session = SESSIONS.get(session_key)
    if session is None or name not in session.documents:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse(session.documents[name])


@app.websocket("/ws/{session_id}")
async def stream(websocket: WebSocket, session_id: str):
    await websocket.accept()
    session = SESSIONS.get(session_id)
    if session is None:
        await websocket.close(code=4004)
        return
    try:
        for frame in session.frames:
            await websocket.send_text(frame)
            await asyncio.sleep(FRAME_INTERVAL_S)
        while True:
            await websocket.send_text(f"{session.last_t_ms}|FINISHED")
            await asyncio.sleep(FINISHED_INTERVAL_S)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="race_data")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    load_sessions(args.data_dir)
    if args.prepare_only:
        for key, s in SESSIONS.items():
            print(f"session {key}: {len(s.frames)} frames", file=sys.stderr)
        return
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
