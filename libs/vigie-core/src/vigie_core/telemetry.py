"""OpenTelemetry tracing: one tracer provider per service, exported over OTLP when configured.

The provider is passed down rather than installed globally, so several services can run in one
process (tests) with their own exporters. Trace context crosses NATS in message headers
(see :mod:`vigie_core.messaging`).
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from vigie_core.settings import TelemetrySettings


def tracer_provider(
    service_name: str, settings: TelemetrySettings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider for this service; ``exporter`` (tests) takes precedence over the OTLP endpoint."""
    exporting = exporter is not None or bool(settings.otlp_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.namespace": "vigie"}),
        # Without an exporter nothing would be kept: spans are not recorded at all (per-frame cost),
        # yet trace ids are still drawn and carried in NATS headers.
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)) if exporting else ALWAYS_OFF,
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otlp_endpoint:
        # Imported here: the OTLP exporter pulls gRPC in, which a service without an endpoint never needs.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    return provider
