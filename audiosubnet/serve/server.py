"""`asn serve` start-up: the bind rule -> socket -> service (models listed, loaded on first use) -> uvicorn.

`build_serve` does every step but the socket and uvicorn (tests call it); `run_serve` adds them, in this
process or (`--workers N`) in N HTTP worker processes in front of this one (serve/workers.py).
"""

from __future__ import annotations

import logging
import re
import signal
from typing import Any

from audiosubnet import heap
from audiosubnet.config import Settings
from audiosubnet.errors import AsnError, UsageError
from audiosubnet.miner.server import bind
from audiosubnet.serve.app import ServeContext, create_app
from audiosubnet.serve.metrics import ServeMetrics
from audiosubnet.serve.security import check_bind, is_loopback
from audiosubnet.serve.voices import VoiceStore
from audiosubnet.service.batching import ServiceConfig, TtsService

log = logging.getLogger(__name__)

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float | None:
    """'5m' -> 300.0, '30s', '1.5h', '250ms', '90' (seconds); '-1' / 'never' / 'forever' -> None (never)."""
    s = str(value).strip().lower()
    if s in ("-1", "never", "forever", "inf", "none"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?", s)
    if not m:
        raise UsageError(f"cannot read '{value}' as a duration", hint="Use e.g. 30s, 5m, 1h, or -1 for never.")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def build_serve(settings: Settings, *, cache: Any = None) -> tuple[ServeContext, Any]:
    """(context, FastAPI app); raises UsageError for an open public bind or a bad setting."""
    from audiosubnet.engines import registry
    from audiosubnet.engines.registry import configure_cache

    s = settings.serve
    api_keys = tuple(k.get_secret_value() for k in s.api_keys)
    check_bind(s.host, api_keys, s.insecure)
    keep_alive = parse_duration(s.keep_alive)
    if cache is None and settings.devices:  # one engine process per device (engines/pool.py)
        from audiosubnet.engines.pool import engine_pool, parse_devices

        cache = engine_pool(parse_devices(settings.devices, settings.device), settings.dtype, settings.cache_budget,
                            threads=s.concurrency, wait_s=20.0, timeout_s=s.request_timeout_s)
    elif cache is None:
        cache = configure_cache(settings.device, settings.dtype, settings.cache_budget)
    models = tuple(s.models) or (settings.model.strip() or "auto",)
    models = tuple(registry.canonical_id(m) for m in models)  # unknown model ids fail here, with a hint
    clone_model = None
    if s.clone_model.strip().lower() not in ("", "none", "off"):
        from audiosubnet.jobs.clone_watch import resolve_clone_model

        clone_model = registry.canonical_id(resolve_clone_model(s.clone_model))
        if clone_model not in models:
            models += (clone_model,)
    metrics = ServeMetrics()
    if hasattr(cache, "procs"):  # an engine pool: per-device metrics
        metrics.watch_devices(cache)
    service = TtsService(ServiceConfig.of(s, models=models, voice=settings.voice, max_text_chars=1000,
                                          concurrency=s.concurrency * getattr(cache, "parallel", 1), lazy=True,
                                          keep_alive_s=keep_alive),
                         cache=cache, observer=metrics)
    service.load()  # lazy: capabilities only, no weights
    ctx = ServeContext(service=service, voices=VoiceStore(settings.home / "serve" / "voices", s.max_saved_voices)
                       if clone_model else None, clone_model=clone_model, api_keys=api_keys,
                       rate_limit_per_min=s.rate_limit_per_min, max_input_chars=s.max_input_chars,
                       max_body_bytes=s.max_body_bytes, max_voice_bytes=s.max_voice_bytes, voice_map=dict(s.voices),
                       request_timeout_s=s.request_timeout_s, drain_timeout_s=s.drain_timeout_s, metrics=metrics)
    return ctx, create_app(ctx)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    s = settings.serve
    return {"log_config": None, "access_log": False, "lifespan": "on", "server_header": False,
            "timeout_keep_alive": 30, "backlog": 2048, "timeout_graceful_shutdown": int(max(1, s.drain_timeout_s))}


def run_serve(settings: Settings) -> None:
    """Blocking: serve until SIGINT/SIGTERM (then drain)."""
    import uvicorn

    s = settings.serve
    api_keys = [k.get_secret_value() for k in s.api_keys if k.get_secret_value()]
    check_bind(s.host, api_keys, s.insecure)  # before binding anything
    if settings.devices:
        from audiosubnet.engines.pool import parse_devices

        parse_devices(settings.devices, settings.device)
    heap.tune_long_running()  # a long-running server: see heap.py
    sock = bind(s.host, s.port)
    ctx = None
    try:
        ctx, app = build_serve(settings)
        keys = f"{len(api_keys)} API key(s)" if api_keys else "no API key"
        if not is_loopback(s.host) and not api_keys:
            log.warning("serving on %s with no API key (--insecure): anyone who can reach it can use it", s.host)
        log.info("asn serve on http://%s:%d (%s; models %s; keep-alive %s%s)", s.host, s.port, keys,
                 ", ".join(ctx.service.config.models), s.keep_alive,
                 f"; {s.workers} HTTP workers" if s.workers > 1 else "")
        if s.workers > 1:
            from audiosubnet.serve.workers import serve_with_workers

            if serve_with_workers(ctx, sock, s.workers, uvicorn_options(settings)):
                raise AsnError("the HTTP workers of asn serve kept dying; stopped",
                               hint="The lines above say why; try `--workers 1` to serve from one process.")
            return
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        previous = signal.signal(signal.SIGTERM, _exit_quietly)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        sock.close()
        close = getattr(ctx.service.cache, "close", None) if ctx is not None else None
        if close is not None:  # the engine processes of --devices
            close()


def _exit_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(0)
