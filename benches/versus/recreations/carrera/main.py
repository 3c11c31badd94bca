# RE-CREATION for benchmarking, NOT the original code. It re-creates the behaviour described
# for Carrera F1 Race Control's main.py (FastAPI + aiomqtt): light gates on MQTT, start
# lights and lap timing, one WebSocket per browser. Written for pitwall-flow's side-by-side
# benchmark (benches/versus); the protocol is FORMATS.md section 7.
#
#     uvicorn main:app --host 0.0.0.0 --port 8000
#
# The configuration is at the top, as in the original; the benchmark overrides it with
# environment variables (CARRERA_BROKER, CARRERA_BROKER_PORT, CARRERA_LIGHT_INTERVAL_S,
# CARRERA_HOLD_MIN_S, CARRERA_HOLD_MAX_S) so the start sequence does not take 9 seconds.

import asyncio
import os
import random
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

# --- Configuration ---
BROKER_ADDRESS = os.environ.get("CARRERA_BROKER", "raspberrypi.local")
BROKER_PORT = int(os.environ.get("CARRERA_BROKER_PORT", "1883"))
TOPIC_TRACK_1 = "carrera/track1/finish"
TOPIC_TRACK_2 = "carrera/track2/finish"
TOPIC_START = "carrera/race/start"
LIGHT_INTERVAL_S = float(os.environ.get("CARRERA_LIGHT_INTERVAL_S", "1.0"))
HOLD_MIN_S = float(os.environ.get("CARRERA_HOLD_MIN_S", "1.0"))
HOLD_MAX_S = float(os.environ.get("CARRERA_HOLD_MAX_S", "4.0"))

race_data = {}
active_connections: list[WebSocket] = []
mqtt_client: aiomqtt.Client | None = None


def reset_race_state():
    race_data.clear()
    race_data.update(
        {
            "status": "idle",
            "tracks": {
                1: {"laps": [], "last_time": None},
                2: {"laps": [], "last_time": None},
            },
        }
    )


reset_race_state()


async def broadcast(message: dict):
    for connection in list(active_connections):
        try:
            await connection.send_json(message)
        except Exception:
            if connection in active_connections:
                active_connections.remove(connection)


def full_state():
    t1 = race_data["tracks"][1]["laps"]
    t2 = race_data["tracks"][2]["laps"]
    return {
        "type": "full_state",
        "status": race_data["status"],
        "track_1_laps": t1,
        "track_2_laps": t2,
        "track_1_last_lap": t1[-1] if t1 else 0,
        "track_2_last_lap": t2[-1] if t2 else 0,
    }


async def start_sequence():
    reset_race_state()
    race_data["status"] = "running"
    await broadcast({"type": "reset"})
    for light in range(1, 6):
        await broadcast({"type": "light", "light_id": light, "state": "on"})
        await asyncio.sleep(LIGHT_INTERVAL_S)
    await asyncio.sleep(random.uniform(HOLD_MIN_S, HOLD_MAX_S))
    await broadcast({"type": "lights_out"})
    if mqtt_client is not None:
        await mqtt_client.publish(TOPIC_START, payload="GO")
    now = time.time()
    for track in race_data["tracks"].values():
        track["last_time"] = now
    await broadcast({"type": "start_race"})


async def stop_race():
    race_data["status"] = "finished"
    t1 = race_data["tracks"][1]["laps"]
    t2 = race_data["tracks"][2]["laps"]
    await broadcast(
        {
            "type": "race_finished",
            "track_1_laps": t1,
            "track_2_laps": t2,
            "track_1_fastest": min(t1) if t1 else 0,
            "track_2_fastest": min(t2) if t2 else 0,
        }
    )


async def mqtt_listener():
    global mqtt_client
    while True:
        try:
            async with aiomqtt.Client(BROKER_ADDRESS, port=BROKER_PORT) as client:
                mqtt_client = client
                await client.subscribe(TOPIC_TRACK_1)
                await client.subscribe(TOPIC_TRACK_2)
                async for message in client.messages:
                    if race_data["status"] != "running":
                        continue
                    track_id = 1 if message.topic.matches(TOPIC_TRACK_1) else 2
                    track = race_data["tracks"][track_id]
                    now = time.time()
                    if track["last_time"] is None:
                        track["last_time"] = now
                        continue
                    lap_time = round(now - track["last_time"], 3)
                    track["last_time"] = now
                    track["laps"].append(lap_time)
                    await broadcast(
                        {"type": "lap_finish", "track": track_id, "lap_time_sec": lap_time}
                    )
        except aiomqtt.MqttError as error:
            mqtt_client = None
            await broadcast({"type": "status", "message": f"MQTT connection lost: {error}"})
            await asyncio.sleep(5)


@asynccontextmanager
async def lifespan(app):
    task = asyncio.create_task(mqtt_listener())
    yield
    task.cancel()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def index():
    return FileResponse(Path(__file__).with_name("index.html"))


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    active_connections.append(websocket)
    await websocket.send_json(full_state())
    try:
        while True:
            command = await websocket.receive_text()
            if command == "start" and race_data["status"] != "running":
                asyncio.create_task(start_sequence())
            elif command == "stop" and race_data["status"] == "running":
                await stop_race()
            elif command == "reset":
                reset_race_state()
                await broadcast({"type": "reset"})
    except WebSocketDisconnect:
        pass
    finally:
        if websocket in active_connections:
            active_connections.remove(websocket)
