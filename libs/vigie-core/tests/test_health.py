import httpx
from prometheus_client import Counter

from vigie_core.lifecycle import service_runtime
from vigie_core.settings import ServiceSettings


async def test_metrics_and_readiness_endpoints() -> None:
    async with service_runtime("example", ServiceSettings()) as runtime:
        frames = Counter("vigie_example_frames", "frames seen", registry=runtime.registry)
        frames.inc(3)
        waiting = {"models": "models not loaded"}
        runtime.readiness.add("models", lambda: waiting.get("models"))
        async with httpx.AsyncClient(base_url=runtime.http_url) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json()["reasons"]["startup"] == "starting"
            runtime.readiness.mark_started()
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["reasons"] == {"models": "models not loaded"}
            waiting.clear()
            assert (await client.get("/readyz")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert "vigie_example_frames_total 3.0" in metrics
