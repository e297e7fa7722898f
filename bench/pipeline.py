"""Throughput of the platform against a single-process loop, in one run on the same video and model.

    make bench      # or: .venv/bin/python bench/pipeline.py --video V --model-repository R

The single-process loop does the same decode and sampling (ingest's PyAV source), the same letterbox,
the same model.onnx in onnxruntime (2 threads), the same decoding, NMS and tracker. The platform runs
a local nats-server, the embedded tritonserver (python backend running the same model.onnx) and the
ingest and inference services as processes; frames per second are counted on TRACKS.

Both rates are (frames - 1) / (time of last result - time of first result). CPU is summed over every
process involved, from each service's readiness (start-up imports are not per-frame work) to the end of
the video; "outside the model" subtracts the model's own CPU time per call, measured alone on 20 of the
frames after the loop (the platform runs the same model with the same threads, so its model CPU is
taken to be the same per frame).

CPU by stage, ms per frame (``stages``), for both:

- loop: each stage timed in-process with the thread's CPU clock (``time.thread_time``): resize (ingest's
  ``FrameResizer.to_rgb``, wrapped for the run, in the decoding thread), letterbox, postprocess (decoding
  and NMS of the model's output), tracking; the model call is the model's CPU measured alone (above);
  decode is the rest of the process's CPU (demuxing and decoding, FFmpeg's threads included, sampling,
  the hand-over between threads): the remainder, not timed directly. The copies the platform adds but the
  loop does not make (a Frame serialised by ingest, parsed by inference) are timed alone on 20 frames
  after the loop (``copies``).
- platform: per process and, for ingest and inference, per thread (psutil): ingest's decoding threads
  (decode and resize, with FFmpeg's threads) and its main thread (the event loop: building and serialising
  each Frame, publishing to NATS); nats-server (the broker); inference's main thread (the event loop:
  parsing, letterbox, the Triton request's client side, postprocess, tracking, publishing TRACKS) and its
  other threads (gRPC's); tritonserver beyond the model (its CPU less the model's, measured alone). The
  services expose no per-stage CPU figure, so what a thread does is not split further ("not measured
  separately"); ``vigie_inference_model_seconds`` gives the model call's wall time, printed beside. The
  anonymiser is not part of this run (bench/scale.py measures it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import nats
import numpy as np
import numpy.typing as npt
import psutil
from prometheus_client.parser import text_string_to_metric_families

from vigie_core.provision import ProvisionSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.platform import total
from vigie_embedded.processes import ProcessSet, free_port
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.detections import decode_detections
from vigie_inference.detector import OnnxRuntimeDetector
from vigie_inference.frames import parse_frame
from vigie_inference.letterbox import letterbox
from vigie_inference.tracker import Tracker, TrackerParams
from vigie_ingest.camera import CameraConfig
from vigie_ingest.pyav_source import PyAVCameraSource
from vigie_ingest.resize import FrameResizer
from vigie_models import INPUT_SIZE, YOLO_MODEL_NAME
from vigie_proto.v1.frames_pb2 import PIXEL_FORMAT_RGB24, Frame


@dataclass
class Figures:
    frames: int
    frames_per_second: float
    cpu_ms_per_frame: float
    model_cpu_ms_per_frame: float
    outside_model_cpu_ms_per_frame: float
    peak_rss_mb: dict[str, float]
    cpu_ms_per_frame_by_process: dict[str, float] | None = None
    # CPU ms per frame by stage; see the module's docstring for how each is measured.
    stages: dict[str, float] | None = None
    # Copies the platform adds (loop only: timed alone), and the model call's wall time (platform only).
    copies: dict[str, float] | None = None
    model_call_wall_ms: float | None = None


class PeakMemory:
    """Samples the resident memory of some processes every 0.2 s and keeps the peaks."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self._processes = processes
        self.peaks = dict.fromkeys(processes, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, process in self._processes.items():
                try:
                    rss = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks[name], rss / 2**20)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {name: round(v, 1) for name, v in self.peaks.items()}


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (tritonserver runs the model in a child stub)."""
    total = 0.0
    try:
        for p in [process, *process.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def main_thread_seconds(process: psutil.Process) -> float:
    """CPU time of a process's main thread (its event loop). The other threads' is the process's less
    this: a decoding thread that has ended is no longer listed, but its time stays in the process's."""
    try:
        return sum(t.user_time + t.system_time for t in process.threads() if t.id == process.pid)
    except psutil.Error:
        return 0.0


class StageClock:
    """CPU seconds of a thread spent in named stages (``time.thread_time``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.thread_time() - started


class TimedResizer:
    """Wraps ingest's ``FrameResizer.to_rgb`` for the loop's run: the resize stage, timed in the decoding
    thread that calls it. The bench's process only; the service is not changed."""

    def __init__(self, clock: StageClock) -> None:
        self._clock = clock
        self._original = FrameResizer.to_rgb

    def __enter__(self) -> None:
        original, clock = self._original, self._clock

        def to_rgb(resizer: FrameResizer, *args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.thread_time()
            try:
                return original(resizer, *args, **kwargs)
            finally:
                clock.add("resize", started)

        FrameResizer.to_rgb = to_rgb  # type: ignore[method-assign,assignment]

    def __exit__(self, *exc: object) -> None:
        FrameResizer.to_rgb = self._original  # type: ignore[method-assign]


def measure_copies(pictures: list[npt.NDArray[np.uint8]], rounds: int = 5) -> dict[str, float]:
    """CPU ms per frame of the copies the platform adds: ingest's Frame built and serialised (the pixels
    copied twice: ``tobytes`` and the message), inference's ``parse_frame`` (one copy, a view of the
    pixels)."""
    serialise = parse = 0.0
    for _ in range(rounds):
        for picture in pictures:
            started = time.process_time()
            height, width = picture.shape[:2]
            frame = Frame(
                camera_id="bench",
                run_id="run",
                sequence=1,
                width=width,
                height=height,
                pixel_format=PIXEL_FORMAT_RGB24,
                pixels=picture.tobytes(),
            )
            data = frame.SerializeToString()
            serialised = time.process_time()
            parse_frame(data, INPUT_SIZE, "bench")
            parsed = time.process_time()
            serialise += serialised - started
            parse += parsed - serialised
    n = rounds * len(pictures)
    return {
        "serialise (ingest)": round(1000 * serialise / n, 3),
        "parse (inference)": round(1000 * parse / n, 3),
    }


def measure_model_cpu(
    detector: OnnxRuntimeDetector, pictures: list[npt.NDArray[np.uint8]], rounds: int = 2
) -> float:
    """CPU seconds of one model call, measured alone: during the loop the decoding thread runs beside
    the model, and the process's CPU clock cannot tell the two apart."""
    multiple = detector.identity.input_multiple
    detector.detect_sync(letterbox(pictures[0], INPUT_SIZE, multiple=multiple)[0][None])  # warm-up
    before = time.process_time()
    for _ in range(rounds):
        for picture in pictures:
            model_input, _ = letterbox(picture, INPUT_SIZE, multiple=multiple)
            detector.detect_sync(model_input[None])
    return (time.process_time() - before) / (rounds * len(pictures))


async def single_process_loop(video: Path, model: Path, sample_fps: float) -> tuple[Figures, float]:
    camera = CameraConfig(id="bench", url=str(video), sample_fps=sample_fps, realtime=False)
    source = PyAVCameraSource(camera)
    detector = OnnxRuntimeDetector(model, threads=2)
    tracker = Tracker(TrackerParams())
    params = tracker.params
    # The pictures the model takes (any size, padded to its stride; or its square), as inference does.
    multiple = detector.identity.input_multiple
    memory = PeakMemory({"single process": psutil.Process()})
    completions: list[float] = []
    pictures: list[npt.NDArray[np.uint8]] = []
    clock = StageClock()
    cpu_start = time.process_time()
    with TimedResizer(clock):
        async for frame in source.frames():
            started = time.thread_time()
            model_input, transform = letterbox(frame.pixels, INPUT_SIZE, multiple=multiple)
            clock.add("letterbox", started)
            boxes, scores = detector.detect_sync(model_input[None])
            started = time.thread_time()
            detections = decode_detections(
                boxes[0], scores[0], transform, score_threshold=params.low_threshold
            )
            clock.add("postprocess", started)
            started = time.thread_time()
            tracker.update(detections, frame.captured_at.timestamp())
            clock.add("tracking", started)
            completions.append(time.perf_counter())
            if len(pictures) < 20:
                pictures.append(frame.pixels)
    cpu = time.process_time() - cpu_start
    model_cpu = measure_model_cpu(detector, pictures)
    frames = len(completions)
    timed = {stage: 1000 * seconds / frames for stage, seconds in clock.seconds.items()}
    stages = {
        "decode (remainder)": 1000 * (cpu / frames - model_cpu) - sum(timed.values()),
        "resize": timed.get("resize", 0.0),
        "letterbox": timed["letterbox"],
        "model call (the model alone)": 1000 * model_cpu,
        "postprocess": timed["postprocess"],
        "tracking": timed["tracking"],
    }
    figures = Figures(
        frames=frames,
        frames_per_second=round((frames - 1) / (completions[-1] - completions[0]), 2),
        cpu_ms_per_frame=round(1000 * cpu / frames, 2),
        model_cpu_ms_per_frame=round(1000 * model_cpu, 2),
        outside_model_cpu_ms_per_frame=round(1000 * (cpu / frames - model_cpu), 2),
        peak_rss_mb=memory.stop(),
        stages={stage: round(ms, 2) for stage, ms in stages.items()},
        copies=measure_copies(pictures),
    )
    return figures, model_cpu


async def platform(video: Path, repository: Path, sample_fps: float, model_cpu_per_frame: float) -> Figures:
    with (
        tempfile.TemporaryDirectory(prefix="vigie-bench-") as logs,
        # FRAMES keeps frames 10 minutes: the benchmark publishes the film faster than it is analysed.
        EmbeddedNats(provision=ProvisionSettings(frames_max_age_s=600)) as nats_server,
        EmbeddedTriton(repository / "python") as triton,
    ):
        processes = ProcessSet(Path(logs))
        completions: list[float] = []
        observer = await nats.connect(nats_server.url)

        async def on_tracks(msg) -> None:  # type: ignore[no-untyped-def]
            completions.append(time.perf_counter())

        await observer.subscribe("vigie.tracks.*", cb=on_tracks)
        ports = {"inference": free_port(), "ingest": free_port()}
        # No registry in this benchmark: the static configuration only (vigie_core.policy).
        common = {"NATS__URL": nats_server.url, "LOG_LEVEL": "WARNING", "POLICY__ENABLED": "false"}
        camera = {"id": "bench", "url": str(video), "sample_fps": sample_fps, "realtime": False}
        try:
            processes.start(
                "inference",
                "vigie_inference",
                {
                    f"VIGIE_INFERENCE_{k}": v
                    for k, v in {
                        **common,
                        "TRITON_URL": triton.grpc_url,
                        "HTTP__PORT": str(ports["inference"]),
                    }.items()
                },
            )
            processes.start(
                "ingest",
                "vigie_ingest",
                {
                    f"VIGIE_INGEST_{k}": v
                    for k, v in {
                        **common,
                        "CAMERAS": json.dumps([camera]),
                        "FRAMES_MAX_AGE_S": "600",
                        "HTTP__PORT": str(ports["ingest"]),
                    }.items()
                },
            )
            watched = {
                "tritonserver": psutil.Process(triton.pid),
                "nats-server": psutil.Process(nats_server.pid),
                **{
                    name: psutil.Process(service.pid)
                    for name, service in zip(ports, processes.services, strict=True)
                },
            }
            # CPU counts from each service's readiness: start-up (imports) is not per-frame work.
            cpu_start = {name: cpu_seconds(watched[name]) for name in ("tritonserver", "nats-server")}
            main_start: dict[str, float] = {}
            async with httpx.AsyncClient() as client:
                while len(cpu_start) < len(watched):
                    for name, port in ports.items():
                        if name in cpu_start:
                            continue
                        try:
                            ready = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                        except httpx.HTTPError:
                            ready = False
                        if ready:
                            cpu_start[name] = cpu_seconds(watched[name])
                            main_start[name] = main_thread_seconds(watched[name])
                    await asyncio.sleep(0.02)
            memory = PeakMemory({name: watched[name] for name in ("ingest", "inference", "tritonserver")})
            idle_since = time.perf_counter()
            last_count = 0
            while True:
                await asyncio.sleep(0.5)
                if len(completions) != last_count:
                    last_count, idle_since = len(completions), time.perf_counter()
                elif completions and time.perf_counter() - idle_since > 5.0:
                    break  # nothing new for 5 s: the video is done
                for name in processes.crashed():
                    log = (Path(logs) / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"{name} crashed; its log ends with:\n{log}")
            cpu_by_process = {name: cpu_seconds(p) - cpu_start[name] for name, p in watched.items()}
            main_thread = {name: main_thread_seconds(watched[name]) - main_start[name] for name in ports}
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{ports['inference']}/metrics")).text
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            cpu = sum(cpu_by_process.values())
            peaks = memory.stop()
        finally:
            processes.stop_all()
            await observer.close()
    frames = len(completions)
    per_frame = {name: 1000 * c / frames for name, c in cpu_by_process.items()}
    ingest_main, inference_main = (1000 * main_thread[name] / frames for name in ("ingest", "inference"))
    ingest_other, inference_other = (
        per_frame[name] - main for name, main in (("ingest", ingest_main), ("inference", inference_main))
    )
    stages = {
        "decode + resize (ingest's decoding threads; not measured separately)": ingest_other,
        "publish (ingest's event loop: Frame built, serialised, sent)": ingest_main,
        "broker (nats-server)": per_frame["nats-server"],
        "parse + letterbox + model call client side + postprocess + tracking + publish TRACKS "
        "(inference's event loop; not measured separately)": inference_main,
        "model call, gRPC threads (inference's other threads)": inference_other,
        "model call, tritonserver beyond the model": per_frame["tritonserver"] - 1000 * model_cpu_per_frame,
        "model call (the model alone, as in the loop)": 1000 * model_cpu_per_frame,
    }
    calls = total(samples, "vigie_inference_model_seconds_count")
    return Figures(
        frames=frames,
        frames_per_second=round((frames - 1) / (completions[-1] - completions[0]), 2),
        cpu_ms_per_frame=round(1000 * cpu / frames, 2),
        model_cpu_ms_per_frame=round(1000 * model_cpu_per_frame, 2),
        outside_model_cpu_ms_per_frame=round(1000 * (cpu / frames - model_cpu_per_frame), 2),
        peak_rss_mb=peaks,
        cpu_ms_per_frame_by_process={name: round(1000 * c / frames, 2) for name, c in cpu_by_process.items()},
        stages={stage: round(ms, 2) for stage, ms in stages.items()},
        model_call_wall_ms=(
            round(1000 * total(samples, "vigie_inference_model_seconds_sum") / calls, 2) if calls else None
        ),
    )


def print_stages(round_: int, loop: Figures, pipeline: Figures) -> None:
    """The CPU breakdown by stage of both, ms per frame."""
    print(f"[{round_}] CPU by stage, ms per frame:")
    for name, figures in (("single-process loop", loop), ("platform", pipeline)):
        assert figures.stages is not None
        print(f"    {name}: {figures.outside_model_cpu_ms_per_frame} outside the model")
        for stage, ms in figures.stages.items():
            print(f"      {ms:8.2f}  {stage}")
    if loop.copies:
        copies = ", ".join(f"{stage} {ms} ms" for stage, ms in loop.copies.items())
        print(f"    copies the platform adds, timed alone: {copies}")
    print(
        "    platform's model call, wall time (vigie_inference_model_seconds): "
        f"{pipeline.model_call_wall_ms} ms"
    )
    print("    anonymiser: not part of this run (make bench-scale measures it)", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--model-repository", type=Path, required=True, help="holds onnx/ and python/")
    parser.add_argument("--sample-fps", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2, help="alternate the two this many times (noise)")
    args = parser.parse_args()
    model = args.model_repository / "onnx" / YOLO_MODEL_NAME / "1" / "model.onnx"
    print(
        f"{os.cpu_count()} cores; video {args.video.name} sampled at {args.sample_fps} frames/s", flush=True
    )
    ratios = []
    for round_ in range(1, args.repeat + 1):
        loop, model_cpu = await single_process_loop(args.video, model, args.sample_fps)
        print(f"[{round_}] single-process loop: {json.dumps(asdict(loop))}", flush=True)
        pipeline = await platform(args.video, args.model_repository, args.sample_fps, model_cpu)
        print(f"[{round_}] platform:            {json.dumps(asdict(pipeline))}", flush=True)
        print_stages(round_, loop, pipeline)
        ratios.append(pipeline.frames_per_second / loop.frames_per_second)
        print(f"[{round_}] ratio platform / single-process loop: {ratios[-1]:.3f}", flush=True)
    print(f"ratios: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
