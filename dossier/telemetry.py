"""OpenTelemetry: one tracer provider per app (no global state), exporter by configuration.

Attributes never carry personal data: only resource types, interactions, route templates
and status codes — never ids from URLs, query values or bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import NoOpTracer, Tracer

from dossier.settings import Settings


def make_tracer(settings: Settings, exporter: SpanExporter | None = None) -> tuple[
        TracerProvider, Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": "dossier"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otel_exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otel_endpoint)))
    else:  # no exporter: spans would be built and dropped; a no-op tracer costs nothing
        return provider, NoOpTracer()
    return provider, provider.get_tracer("dossier")


def span_factory(tracer: Tracer) -> Any:
    """A span opener for the Repository's calls; None (no spans) for the no-op tracer."""
    if isinstance(tracer, NoOpTracer):
        return None

    def start(name: str) -> AbstractContextManager[Any]:
        return tracer.start_as_current_span(name)
    return start


@contextmanager
def request_span(tracer: Tracer, method: str, route: str) -> Iterator[Any]:
    with tracer.start_as_current_span(f"{method} {route}") as span:
        span.set_attribute("http.request.method", method)
        span.set_attribute("http.route", route)
        yield span


class RequestMetrics:
    """Request count and duration per route template, method and status (no ids, no data)."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("dossier")
        self.requests: Counter = meter.create_counter(
            "dossier.http.requests", unit="1", description="HTTP requests")
        self.duration: Histogram = meter.create_histogram(
            "dossier.http.duration", unit="ms", description="HTTP request duration")

    def record(self, method: str, route: str, status: int, millis: float) -> None:
        attributes: dict[str, str | int] = {"http.request.method": method, "http.route": route,
                      "http.response.status_code": status}
        self.requests.add(1, attributes)
        self.duration.record(millis, attributes)


def make_meter(settings: Settings, reader: MetricReader | None = None) -> MeterProvider:
    readers: list[MetricReader] = []
    if reader is not None:
        readers.append(reader)
    elif settings.otel_exporter == "console":
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        endpoint = (settings.otel_endpoint or "").rstrip("/")
        readers.append(PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=endpoint.replace("/v1/traces", "/v1/metrics"))))
    return MeterProvider(metric_readers=readers,
                         resource=Resource.create({"service.name": "dossier"}))
