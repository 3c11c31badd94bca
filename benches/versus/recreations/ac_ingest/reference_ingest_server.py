# RE-CREATION for benchmarking, NOT the original code. It re-creates the behaviour described
# for the Assetto Corsa project's server/reference_ingest_server.py: an async Python gRPC
# server (grpc.aio) implementing telemetry.v1 TelemetryIngest.StreamFrames that acknowledges
# every frame with its monotonic_ns. Written for pitwall-flow's side-by-side benchmark
# (benches/versus).
#
#     python reference_ingest_server.py [--address 127.0.0.1:50051]
#
# Needs the generated stubs (telemetry/v1/telemetry_pb2*.py) on the Python path:
#     python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. \
#         proto/telemetry/v1/telemetry.proto

import argparse
import asyncio
import logging

import grpc

from telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class TelemetryIngest(telemetry_pb2_grpc.TelemetryIngestServicer):
    def __init__(self):
        self.frames = 0

    async def StreamFrames(self, request_iterator, context):
        peer = context.peer()
        logging.info("stream opened by %s", peer)
        async for frame in request_iterator:
            self.frames += 1
            yield telemetry_pb2.StreamAck(last_monotonic_ns=frame.monotonic_ns)
        logging.info("stream from %s closed", peer)


async def serve(address):
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    telemetry_pb2_grpc.add_TelemetryIngestServicer_to_server(TelemetryIngest(), server)
    server.add_insecure_port(address)
    await server.start()
    logging.info("listening on %s", address)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="[::]:50051")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.address))
