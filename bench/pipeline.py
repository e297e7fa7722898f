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

from vigie_core.provision import ProvisionSettings
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.processes import ProcessSet, free_port
from vigie_embedded.triton import EmbeddedTriton
from vigie_inference.detections import decode_detections
from vigie_inference.detector import OnnxRuntimeDetector
from vigie_inference.letterbox import letterbox
from vigie_inference.tracker import Tracker, TrackerParams
from vigie_ingest.camera import CameraConfig
from vigie_ingest.pyav_source import PyAVCameraSource
from vigie_models import INPUT_SIZE, YOLO_MODEL_NAME


@dataclass
class Figures:
    frames: int
    frames_per_second: float
    cpu_ms_per_frame: float
    model_cpu_ms_per_frame: float
    outside_model_cpu_ms_per_frame: float
    peak_rss_mb: dict[str, float]
    cpu_ms_per_frame_by_process: dict[str, float] | None = None


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


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (tritonserver runs the model in a child stub)."""
    total = 0.0
    try:
        for p in [process, *process.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def measure_model_cpu(
    detector: OnnxRuntimeDetector, pictures: list[npt.NDArray[np.uint8]], rounds: int = 2
) -> float:
    """CPU seconds of one model call, measured alone: during the loop the decoding thread runs beside
    the model, and the process's CPU clock cannot tell the two apart."""
    batch = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    detector.detect_sync(batch)  # warm-up
    before = time.process_time()
    for _ in range(rounds):
        for picture in pictures:
            letterbox(picture, INPUT_SIZE, out=batch[0])
            detector.detect_sync(batch)
    return (time.process_time() - before) / (rounds * len(pictures))


async def single_process_loop(video: Path, model: Path, sample_fps: float) -> tuple[Figures, float]:
    camera = CameraConfig(id="bench", url=str(video), sample_fps=sample_fps, realtime=False)
    source = PyAVCameraSource(camera)
    detector = OnnxRuntimeDetector(model, threads=2)
    tracker = Tracker(TrackerParams())
    params = tracker.params
    batch = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    memory = PeakMemory({"single process": psutil.Process()})
    completions: list[float] = []
    pictures: list[npt.NDArray[np.uint8]] = []
    cpu_start = time.process_time()
    async for frame in source.frames():
        _, transform = letterbox(frame.pixels, INPUT_SIZE, out=batch[0])
        boxes, scores = detector.detect_sync(batch)
        detections = decode_detections(boxes[0], scores[0], transform, score_threshold=params.low_threshold)
        tracker.update(detections, frame.captured_at.timestamp())
        completions.append(time.perf_counter())
        if len(pictures) < 20:
            pictures.append(frame.pixels)
    cpu = time.process_time() - cpu_start
    model_cpu = measure_model_cpu(detector, pictures)
    frames = len(completions)
    figures = Figures(
        frames=frames,
        frames_per_second=round((frames - 1) / (completions[-1] - completions[0]), 2),
        cpu_ms_per_frame=round(1000 * cpu / frames, 2),
        model_cpu_ms_per_frame=round(1000 * model_cpu, 2),
        outside_model_cpu_ms_per_frame=round(1000 * (cpu / frames - model_cpu), 2),
        peak_rss_mb=memory.stop(),
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
            cpu_start = {name: _cpu_seconds(watched[name]) for name in ("tritonserver", "nats-server")}
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
                            cpu_start[name] = _cpu_seconds(watched[name])
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
            cpu_by_process = {name: _cpu_seconds(p) - cpu_start[name] for name, p in watched.items()}
            cpu = sum(cpu_by_process.values())
            peaks = memory.stop()
        finally:
            processes.stop_all()
            await observer.close()
    frames = len(completions)
    return Figures(
        frames=frames,
        frames_per_second=round((frames - 1) / (completions[-1] - completions[0]), 2),
        cpu_ms_per_frame=round(1000 * cpu / frames, 2),
        model_cpu_ms_per_frame=round(1000 * model_cpu_per_frame, 2),
        outside_model_cpu_ms_per_frame=round(1000 * (cpu / frames - model_cpu_per_frame), 2),
        peak_rss_mb=peaks,
        cpu_ms_per_frame_by_process={name: round(1000 * c / frames, 2) for name, c in cpu_by_process.items()},
    )


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
        ratios.append(pipeline.frames_per_second / loop.frames_per_second)
        print(f"[{round_}] ratio platform / single-process loop: {ratios[-1]:.3f}", flush=True)
    print(f"ratios: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
