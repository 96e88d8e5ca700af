"""Prometheus metrics of `asn serve` (its own registry), and the service Observer hooks.

With `--workers N` the registry lives in the main process (the hub, which runs the service): the workers send
their request events there (serve/workers.py `RelayServeMetrics`) and /metrics on any worker shows the one
registry, so the counters are totals over every worker.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from audiosubnet.service.batching import Observer

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class MetricsSink(Protocol):
    """What the HTTP edge records (ServeMetrics in process; RelayServeMetrics in a worker process)."""

    def request(self, endpoint: str, status: int, seconds: float) -> None: ...

    def served(self, model: str, audio_s: float, chars: int) -> None: ...

    def first_audio(self, seconds: float) -> None: ...

    def auth_failure(self) -> None: ...

    def rate_limit(self) -> None: ...

    def loaded(self, n: int) -> None: ...

    async def exposition(self) -> bytes: ...


class ServeMetrics(Observer):
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("asn_serve_requests", "Requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("asn_serve_request_seconds", "Time to the last byte", ["endpoint"],
                                 buckets=_LATENCY, registry=r)
        self.first_byte = Histogram("asn_serve_first_audio_seconds", "Time to the first audio byte (speech)",
                                    buckets=_LATENCY, registry=r)
        self.audio_seconds = Counter("asn_serve_audio_seconds", "Seconds of audio served", ["model"], registry=r)
        self.characters = Counter("asn_serve_characters", "Characters synthesized", ["model"], registry=r)
        self.auth_failures = Counter("asn_serve_auth_failures", "Requests without a valid API key", registry=r)
        self.rate_limited = Counter("asn_serve_rate_limited", "Requests refused by the per-caller limit",
                                    registry=r)
        self.batch_size = Histogram("asn_serve_batch_size", "Requests per engine call", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.engine_seconds = Histogram("asn_serve_engine_seconds", "Seconds per engine call", ["model"],
                                        buckets=_LATENCY, registry=r)
        self.queue_depth = Gauge("asn_serve_queue_depth", "Requests admitted and not yet answered", registry=r)
        self.in_flight = Gauge("asn_serve_in_flight", "Requests inside engine calls", registry=r)
        self.models_loaded = Gauge("asn_serve_models_loaded", "Served models whose weights are loaded", registry=r)

    def watch_devices(self, pool: Any) -> None:
        """Per-device metrics of an engine pool (`asn serve --devices`)."""
        from audiosubnet.miner.metrics import DevicesCollector

        self.registry.register(DevicesCollector("asn_serve", pool))

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def served(self, model: str, audio_s: float, chars: int) -> None:
        self.audio_seconds.labels(model).inc(audio_s)
        self.characters.labels(model).inc(chars)

    def first_audio(self, seconds: float) -> None:
        self.first_byte.observe(seconds)

    def auth_failure(self) -> None:
        self.auth_failures.inc()

    def rate_limit(self) -> None:
        self.rate_limited.inc()

    def loaded(self, n: int) -> None:
        self.models_loaded.set(n)

    async def exposition(self) -> bytes:
        return self.render()

    # Observer (called by the service)
    def batch(self, model_id: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model_id).observe(size)
        self.engine_seconds.labels(model_id).observe(seconds)

    def queue(self, depth: int, in_flight: int) -> None:
        self.queue_depth.set(depth)
        self.in_flight.set(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
