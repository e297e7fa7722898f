"""What inference's event loop spends on a frame, operation by operation, on real NATS and Triton servers.

    .venv/bin/python bench/event_loop.py --video var/videos/sample.mp4 --model-repository var/model_repository

bench/pipeline.py measures inference's event loop as a whole (5-6 ms of CPU a frame on our 2-core machine,
against about 1.3 ms for the same letterbox, decoding and tracking in one process); the service exposes no
per-stage figure. This benchmark splits it: each operation the loop does for a frame is repeated alone,
``--frames`` times, in this process, and timed with the process's CPU clock (every thread: gRPC's and
nats-py's included), then reported in ms per frame:

- receive: a pull ``fetch`` of one frame from FRAMES (the request, the 292 KB message parsed by nats-py);
- parse: ``vigie_inference.frames.parse_frame`` (protobuf, checks);
- letterbox: into the model input (416x288 for this 16:9 film);
- model call, client side: one Triton gRPC request and its answer, against the model stand-in of
  bench/scale.py (zeros out), so that the model's own cost is left out;
- decode: ``decode_detections`` on the real model's outputs for the same frames (onnxruntime, computed
  before timing);
- track: ``Tracker.update`` on those detections;
- publish TRACKS: a TrackFrame built, serialised and published to TRACKS, waiting for its acknowledgement;
- ack: the frame's acknowledgement to FRAMES (written out by one flush at the end, counted with them).

The publishing of the frames by ingest (a Frame serialised and published to FRAMES, waiting for its
acknowledgement) is timed too, for reference. The sum is compared with the loop's measured whole; what is
left is the event loop's own scheduling (tasks, futures, timers), which no single operation holds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import av
import nats
import numpy as np
import numpy.typing as npt
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from vigie_core.provision import ProvisionSettings
from vigie_core.streams import FRAMES_PREFIX, frames_subject, partition_filter, tracks_subject
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.analysis import CameraTrackers
from vigie_inference.detections import decode_detections
from vigie_inference.detector import OnnxRuntimeDetector, TritonDetector
from vigie_inference.frames import parse_frame
from vigie_inference.letterbox import letterbox
from vigie_inference.settings import InferenceSettings
from vigie_ingest.resize import fit_within
from vigie_models import INPUT_SIZE, YOLO_MODEL_NAME
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/scale.py, as bench.scale

from bench.scale import stand_in_repository


def film_frames(video: Path, count: int, sample_fps: float = 5.0) -> list[npt.NDArray[np.uint8]]:
    """``count`` frames of the film at ``sample_fps``, resized as ingest sends them."""
    frames: list[npt.NDArray[np.uint8]] = []
    next_s = 0.0
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time < next_s:
                continue
            next_s += 1 / sample_fps
            width, height = fit_within(frame.width, frame.height)
            frames.append(np.asarray(frame.to_ndarray(width=width, height=height, format="rgb24"), np.uint8))
            if len(frames) == count:
                break
    return frames


def frame_message(pixels: npt.NDArray[np.uint8], sequence: int) -> bytes:
    frame = Frame(camera_id="bench", run_id="run", sequence=sequence)
    frame.width, frame.height = pixels.shape[1], pixels.shape[0]
    frame.pixel_format = PIXEL_FORMAT_RGB24
    frame.pixels = pixels.tobytes()
    frame.captured_at.FromNanoseconds(1_700_000_000_000_000_000 + sequence * 200_000_000)
    return frame.SerializeToString()


async def timed(operation: Callable[[int], Awaitable[object]], count: int) -> float:
    """CPU ms per call of ``operation(i)`` for i in 0..count-1, every thread of this process counted."""
    started = time.process_time()
    for i in range(count):
        await operation(i)
    return 1000 * (time.process_time() - started) / count


async def run(video: Path, repository: Path, count: int) -> dict[str, float]:
    pictures = film_frames(video, count)
    count = len(pictures)
    messages = [frame_message(p, i) for i, p in enumerate(pictures)]
    # The real model's outputs for these frames, so that decoding and tracking see real detections.
    model = OnnxRuntimeDetector(repository / "onnx" / YOLO_MODEL_NAME / "1" / "model.onnx")
    multiple = model.identity.input_multiple
    inputs = [letterbox(p, INPUT_SIZE, multiple=multiple) for p in pictures]
    outputs = [model.detect_sync(model_input[None]) for model_input, _ in inputs]
    settings = InferenceSettings()
    figures: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="vigie-bench-") as work,
        EmbeddedNats(provision=ProvisionSettings(frames_max_age_s=600)) as server,
        EmbeddedTriton(stand_in_repository(repository, Path(work) / "models")) as triton,
    ):
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        figures["publish FRAMES (ingest, for reference)"] = await timed(
            lambda i: js.publish(frames_subject("bench"), messages[i]), count
        )
        pull = await js.pull_subscribe(
            partition_filter(FRAMES_PREFIX, 0),  # the frames' subjects in the stream (one partition)
            durable="bench",
            stream="FRAMES",
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=count * 2),
        )
        received: list[Msg] = []

        async def receive(_: int) -> None:
            received.extend(await pull.fetch(1, timeout=5))

        figures["receive (fetch one frame)"] = await timed(receive, count)
        figures["parse"] = await timed(
            lambda i: _now(parse_frame(received[i].data, INPUT_SIZE, "bench")), count
        )
        batch = np.empty((1, *inputs[0][0].shape), np.uint8)
        figures["letterbox"] = await timed(
            lambda i: _now(letterbox(pictures[i], INPUT_SIZE, out=batch[0], multiple=multiple)), count
        )
        detector = TritonDetector(triton.grpc_url, YOLO_MODEL_NAME)
        await detector.detect(batch)  # warm-up: the channel
        figures["model call, client side (stand-in model)"] = await timed(
            lambda i: detector.detect(batch), count
        )
        await detector.close()
        detections = [
            decode_detections(boxes[0], scores[0], transform, score_threshold=settings.tracker.low_threshold)
            for (boxes, scores), (_, transform) in zip(outputs, inputs, strict=True)
        ]
        figures["decode"] = await timed(
            lambda i: _now(
                decode_detections(
                    outputs[i][0][0],
                    outputs[i][1][0],
                    inputs[i][1],
                    score_threshold=settings.tracker.low_threshold,
                )
            ),
            count,
        )
        trackers = CameraTrackers(settings, model="bench")
        frames = [parse_frame(m, INPUT_SIZE)[0] for m in messages]
        analyses = []

        async def track(i: int) -> None:
            analyses.append(trackers.analyse(frames[i], detections[i], time.monotonic()))

        figures["track (and the TrackFrame built)"] = await timed(track, count)

        async def publish_tracks(i: int) -> None:
            for message in analyses[i].messages:
                await js.publish(tracks_subject(message.camera_id), message.SerializeToString())

        figures["publish TRACKS (serialised, acknowledged)"] = await timed(publish_tracks, count)

        async def ack(i: int) -> None:
            await received[i].ack()
            if i == count - 1:
                await nc.flush()  # the acknowledgements written to the socket, counted with them

        figures["ack the frame"] = await timed(ack, count)
        await nc.close()
    return figures


async def _now(value: object) -> object:
    return value


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--model-repository", type=Path, required=True, help="holds onnx/ and python/")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median of each figure is printed")
    args = parser.parse_args()
    runs = [await run(args.video, args.model_repository, args.frames) for _ in range(args.repeat)]
    print(f"inference's event loop, CPU ms per frame by operation (median of {args.repeat} runs):")
    total = 0.0
    for name in runs[0]:
        values = [r[name] for r in runs]
        median = statistics.median(values)
        if not name.endswith("(ingest, for reference)"):
            total += median
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"  {median:7.3f}  {name}  ({spread})")
    print(f"  {total:7.3f}  in all (bench/pipeline.py measures the whole loop: the rest is its scheduling)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
