"""Consumer lag on /metrics: how many messages wait in a stream for the service that consumes them.

Each consuming service reports its own durable consumer, read from the NATS server every few seconds
(``$JS.API.CONSUMER.INFO``, which its NATS user may call on its own streams), so that the pipeline
dashboard shows the same figures on the embedded platform and in a cluster, whether or not the NATS
server's own exporter runs::

    start_consumer_lag(runtime, js, "FRAMES", "inference-0")

``vigie_consumer_pending_messages{stream, consumer}``: delivered to nobody yet;
``vigie_consumer_ack_pending_messages{stream, consumer}``: delivered, not yet acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Gauge

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from vigie_core.lifecycle import ServiceRuntime

__all__ = ["ACK_PENDING", "PENDING", "ConsumerLag", "start_consumer_lag"]

logger = logging.getLogger("vigie.lag")

PENDING = "vigie_consumer_pending_messages"
ACK_PENDING = "vigie_consumer_ack_pending_messages"
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ConsumerLag] = weakref.WeakKeyDictionary()


class ConsumerLag:
    """The two gauges of one service's registry (one instance per registry: Prometheus names are unique)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["stream", "consumer"]
        self.pending = Gauge(
            PENDING, "Messages of the stream not yet delivered to the consumer", labels, registry=registry
        )
        self.ack_pending = Gauge(
            ACK_PENDING,
            "Messages delivered to the consumer and not yet acknowledged",
            labels,
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ConsumerLag:
        if registry not in _BY_REGISTRY:
            _BY_REGISTRY[registry] = cls(registry)
        return _BY_REGISTRY[registry]

    async def read(self, js: JetStreamContext, stream: str, consumer: str) -> None:
        info = await js.consumer_info(stream, consumer)
        self.pending.labels(stream, consumer).set(info.num_pending or 0)
        self.ack_pending.labels(stream, consumer).set(info.num_ack_pending or 0)

    def forget(self, stream: str, consumer: str) -> None:
        for gauge in (self.pending, self.ack_pending):
            with contextlib.suppress(KeyError):
                gauge.remove(stream, consumer)

    async def watch(
        self, js: JetStreamContext, stream: str, consumer: str, stop: asyncio.Event, interval_s: float
    ) -> None:
        """Read the lag every ``interval_s`` until ``stop``; a failed read leaves no stale figure."""
        failing = False
        while not stop.is_set():
            try:
                await self.read(js, stream, consumer)
                failing = False
            except NotFoundError:  # not created yet (its service creates it when it starts consuming)
                self.forget(stream, consumer)
            except Exception as error:  # lag is advisory: the service goes on without it
                if not failing:
                    logger.warning("cannot read the lag of consumer %s on %s: %s", consumer, stream, error)
                failing = True
                self.forget(stream, consumer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


def start_consumer_lag(
    runtime: ServiceRuntime, js: JetStreamContext, stream: str, consumer: str, *, interval_s: float = 5.0
) -> asyncio.Task[None]:
    """Report the lag of ``consumer`` on ``stream`` until the service stops."""
    lag = ConsumerLag.of(runtime.registry)
    task = asyncio.create_task(
        lag.watch(js, stream, consumer, runtime.stop_requested, interval_s), name=f"lag-{stream}-{consumer}"
    )

    async def finish() -> None:
        runtime.stop_requested.set()
        await task
        lag.forget(stream, consumer)

    runtime.exit_stack.push_async_callback(finish)
    return task
