"""Prometheus metrics of one miner (its own registry, so several apps in one process never collide).

The HTTP edge reports through four calls (`request`, `auth_failure`, `rejection`, `disconnect`) and reads the text with
`await exposition()`; with `--workers N` the worker processes relay those calls to the main process
(miner/workers.py), so one registry counts every request whichever worker answered it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from audiosubnet.service.batching import Observer

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class MinerMetrics(Observer):
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("asn_miner_requests", "Requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("asn_miner_request_seconds", "Time from the first byte read to the response",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.audio_seconds = Counter("asn_miner_audio_seconds", "Seconds of audio served", ["model"], registry=r)
        self.characters = Counter("asn_miner_characters", "Characters synthesized", ["model"], registry=r)
        self.auth_failures = Counter("asn_miner_auth_failures", "btauth/1 failures by reason", ["reason"],
                                     registry=r)
        self.disconnects = Counter("asn_miner_client_disconnects", "Requests whose client hung up before its body "
                                   "was read (slow or abandoned uploads; not errors of the miner)", ["endpoint"],
                                   registry=r)
        self.engine_restarts = Counter("asn_miner_engine_restarts", "Engine processes restarted after dying",
                                       registry=r)
        self.engine_pid = Gauge("asn_miner_engine_pid", "Process id of the engine process (0: in process)",
                                registry=r)
        self.rejections = Counter("asn_miner_policy_rejections", "Authenticated callers refused, by reason",
                                  ["reason"], registry=r)
        self.batch_size = Histogram("asn_miner_batch_size", "Requests per engine call", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.engine_seconds = Histogram("asn_miner_engine_seconds", "Seconds per engine call", ["model"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("asn_miner_queue_depth", "Requests admitted and not yet answered", registry=r)
        self.in_flight = Gauge("asn_miner_in_flight", "Requests inside engine calls", registry=r)
        self.metagraph_age = Gauge("asn_miner_metagraph_age_seconds", "Age of the metagraph snapshot", registry=r)

    def watch_metagraph(self, age: Callable[[], float | None]) -> None:
        self.metagraph_age.set_function(lambda: age() or 0.0)

    def watch_engine(self, pid: Callable[[], int | None]) -> None:
        self.engine_pid.set_function(lambda: pid() or 0)

    def watch_devices(self, pool: Any) -> None:
        """Per-device metrics of an engine pool (`--devices`), read from `pool.stats()` at each scrape."""
        self.registry.register(DevicesCollector("asn_miner", pool))

    # the HTTP edge
    def request(self, endpoint: str, status: int, seconds: float, model: str = "-", audio_s: float = 0.0,
                chars: int = 0) -> None:
        """One answered request; audio and characters count for the model only when it was served (200)."""
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status == 200:
            self.audio_seconds.labels(model).inc(audio_s)
            self.characters.labels(model).inc(chars)

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def rejection(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def disconnect(self, endpoint: str) -> None:
        self.disconnects.labels(endpoint).inc()

    async def exposition(self) -> bytes:
        return self.render()

    # Observer (called by the service)
    def batch(self, model_id: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model_id).observe(size)
        self.engine_seconds.labels(model_id).observe(seconds)

    def engine_restart(self) -> None:
        self.engine_restarts.inc()

    def queue(self, depth: int, in_flight: int) -> None:
        self.queue_depth.set(depth)
        self.in_flight.set(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DevicesCollector:
    """`<prefix>_device_*` series, labelled by device (cuda:0, cpu:1...), from an EnginePool's `stats()`:
    batches, requests and busy seconds (counters), requests in flight, up, pid (gauges), restarts (counter)."""

    _SERIES = (("batches", CounterMetricFamily, "Engine calls (batches) served by the device's engine process"),
               ("requests", CounterMetricFamily, "Requests in the batches served by the device's engine process"),
               ("busy_seconds", CounterMetricFamily, "Seconds with at least one call in the device's engine"),
               ("in_flight", GaugeMetricFamily, "Requests inside the device's engine now"),
               ("restarts", CounterMetricFamily, "Times the device's engine process died and was restarted"),
               ("up", GaugeMetricFamily, "1 while the device's engine process is serving, 0 while it restarts"),
               ("pid", GaugeMetricFamily, "Process id of the device's engine process"))

    def __init__(self, prefix: str, pool: Any):
        self.prefix, self.pool = prefix, pool

    def describe(self) -> Iterator[Any]:
        for name, family, doc in self._SERIES:
            yield family(f"{self.prefix}_device_{name}", doc, labels=["device"])

    def collect(self) -> Iterator[Any]:
        stats = self.pool.stats()
        for name, family, doc in self._SERIES:
            f = family(f"{self.prefix}_device_{name}", doc, labels=["device"])
            for st in stats:
                f.add_metric([st.device], float(getattr(st, name)))
            yield f
