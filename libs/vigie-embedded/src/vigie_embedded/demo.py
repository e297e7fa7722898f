"""The embedded platform on one machine: a local nats-server and tritonserver, the services as local
processes, one video as a camera. Shows what the platform produced, read from the services' own
/metrics (the demo never reads FRAMES or TRACKS: it stays outside the inference boundary)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from vigie_core.permissions import SERVICES
from vigie_embedded.nats import EmbeddedNats
from vigie_embedded.processes import ProcessSet, free_port
from vigie_embedded.triton import EmbeddedTriton

CAMERA_ID = "sample"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class DemoOptions:
    video: Path
    model_repository: Path
    sample_fps: float = 5.0
    timeout_s: float = 600.0
    serve: bool = False
    as_json: bool = False


@dataclass
class DemoResult:
    camera_state: str = "starting"
    frames_decoded: int = 0
    frames_published: int = 0
    frames_analysed: int = 0
    analysed_per_second: float = 0.0
    tracks_by_class: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)


def scrape(client: httpx.Client, url: str) -> Samples:
    """Every sample a service's /metrics shows, by name and labels (empty when it does not answer)."""
    try:
        text = client.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (metric, have), value in samples.items() if metric == name and wanted <= have)


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.result = DemoResult()
        self.ingest_url = f"http://127.0.0.1:{free_port()}"
        self.inference_url = f"http://127.0.0.1:{free_port()}"

    def say(self, line: str) -> None:
        if not self.options.as_json:
            print(line, flush=True)

    def run(self) -> int:
        options = self.options
        for path, target in ((options.video, "videos"), (options.model_repository, "models")):
            if not path.exists():
                print(f"{path} not found: run 'make {target}'", file=sys.stderr)
                return 2
        self.say("starting nats-server and tritonserver ...")
        with tempfile.TemporaryDirectory(prefix="vigie-demo-") as logs_dir:
            logs = Path(logs_dir)
            processes = ProcessSet(logs)
            try:
                with (
                    # One NATS user per service, each allowed only its subjects (vigie_core.permissions).
                    EmbeddedNats(services=SERVICES) as nats,
                    EmbeddedTriton(options.model_repository, log_path=logs / "tritonserver.log") as triton,
                ):
                    self._start_services(processes, nats, triton)
                    code = self._watch(processes, logs)
            except KeyboardInterrupt:
                self.say("\nstopping ...")
                code = 130
            finally:
                processes.stop_all()
        if options.as_json:
            print(json.dumps(asdict(self.result)))
        else:
            self._summary()
        return code

    def _start_services(self, processes: ProcessSet, nats: EmbeddedNats, triton: EmbeddedTriton) -> None:
        # Frames wait in FRAMES until analysed: a file is read faster than real time here.
        common = {"LOG_LEVEL": "INFO"}
        camera = {
            "id": CAMERA_ID,
            "url": str(self.options.video.resolve()),
            "sample_fps": self.options.sample_fps,
            "realtime": False,
        }
        inference = {
            **common,
            "HTTP__PORT": self.inference_url.rsplit(":", 1)[1],
            "TRITON_URL": triton.grpc_url,
        }
        ingest = {
            **common,
            "HTTP__PORT": self.ingest_url.rsplit(":", 1)[1],
            "CAMERAS": json.dumps([camera]),
            "FRAMES_MAX_AGE_S": "600",
        }
        processes.start(
            "inference",
            "vigie_inference",
            {**nats.service_env("inference"), **{f"VIGIE_INFERENCE_{k}": v for k, v in inference.items()}},
        )
        processes.start(
            "ingest",
            "vigie_ingest",
            {**nats.service_env("ingest"), **{f"VIGIE_INGEST_{k}": v for k, v in ingest.items()}},
        )
        self.result.endpoints = {
            "ingest: /metrics /healthz /readyz": self.ingest_url,
            "inference: /metrics /healthz /readyz": self.inference_url,
            "nats-server (client)": nats.url,
            "nats-server (monitoring)": nats.monitoring_url,
            "tritonserver (gRPC)": triton.grpc_url,
            "tritonserver (HTTP)": triton.http_url,
        }
        for name, url in self.result.endpoints.items():
            self.say(f"  {name:38s} {url}")

    def _read(self, client: httpx.Client) -> None:
        ingest, inference = scrape(client, self.ingest_url), scrape(client, self.inference_url)
        result = self.result
        result.frames_decoded = int(total(ingest, "vigie_ingest_frames_decoded_total"))
        result.frames_published = int(total(ingest, "vigie_ingest_frames_published_total"))
        result.frames_analysed = int(total(inference, "vigie_inference_frames_total"))
        result.tracks_by_class = {
            dict(labels)["object_class"]: int(value)
            for (metric, labels), value in inference.items()
            if metric == "vigie_inference_tracks_started_total"
        }
        for (metric, labels), value in ingest.items():
            if metric == "vigie_ingest_camera_state" and value == 1:
                result.camera_state = dict(labels)["state"]

    def _watch(self, processes: ProcessSet, logs: Path) -> int:
        result, started, first_analysed_at = self.result, time.monotonic(), 0.0
        with httpx.Client() as client:
            while True:
                time.sleep(1.0)
                for name in processes.crashed():
                    log = (logs / f"{name}.log").read_text()[-3000:]
                    print(f"{name} stopped unexpectedly; its log ends with:\n{log}", file=sys.stderr)
                    return 1
                self._read(client)
                now = time.monotonic()
                if result.frames_analysed and not first_analysed_at:
                    first_analysed_at = now
                if first_analysed_at and now > first_analysed_at:
                    result.analysed_per_second = round(result.frames_analysed / (now - first_analysed_at), 1)
                tracked = ", ".join(f"{n} {c}" for c, n in sorted(result.tracks_by_class.items()))
                self.say(
                    f"[{now - started:4.0f} s] {result.camera_state}: {result.frames_decoded} decoded, "
                    f"{result.frames_published} sent, {result.frames_analysed} analysed "
                    f"({result.analysed_per_second}/s); tracked: {tracked or 'none yet'}"
                )
                ended = result.camera_state in ("finished", "failed")
                if ended and result.frames_analysed >= result.frames_published and not self.options.serve:
                    return 0 if result.camera_state == "finished" else 1
                if now - started > self.options.timeout_s and not self.options.serve:
                    print(f"gave up after {self.options.timeout_s:.0f} s", file=sys.stderr)
                    return 1

    def _summary(self) -> None:
        result = self.result
        print(f"\nVigie analysed {self.options.video.name}:")
        print(f"  frames decoded:   {result.frames_decoded}")
        print(
            f"  frames analysed:  {result.frames_analysed} ({result.analysed_per_second} frames/s end to end)"
        )
        for object_class, count in sorted(result.tracks_by_class.items()):
            print(f"  {object_class + ' tracks:':17s} {count}")
        if self.options.serve:
            return
        print("The endpoints above stay up with --serve (make demo ARGS=--serve), until Ctrl-C.")


def run_demo(options: DemoOptions) -> int:
    return Demo(options).run()
