from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vigie_core.messaging import context_from_headers, trace_headers
from vigie_core.settings import TelemetrySettings
from vigie_core.telemetry import tracer_provider


def test_spans_are_exported_and_one_trace_follows_a_message_across_services() -> None:
    exporter = InMemorySpanExporter()
    ingest = tracer_provider("ingest", TelemetrySettings(), exporter).get_tracer("t")
    inference = tracer_provider("inference", TelemetrySettings(), exporter).get_tracer("t")
    with ingest.start_as_current_span("ingest.publish"):
        headers = trace_headers()
    with inference.start_as_current_span("inference.track", context=context_from_headers(headers)):
        pass
    publish, track = exporter.get_finished_spans()
    assert track.context.trace_id == publish.context.trace_id
    assert track.parent is not None
    assert track.parent.span_id == publish.context.span_id
    assert track.resource.attributes["service.name"] == "inference"


def test_without_an_exporter_spans_are_not_recorded_but_context_still_travels() -> None:
    tracer = tracer_provider("ingest", TelemetrySettings()).get_tracer("t")
    with tracer.start_as_current_span("ingest.publish") as span:
        assert not span.is_recording()
        assert "traceparent" in trace_headers()
