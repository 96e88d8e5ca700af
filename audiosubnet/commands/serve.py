"""`asn serve`: an OpenAI-compatible text-to-speech server (POST /v1/audio/speech) with a page to try it."""

from __future__ import annotations

from typing import Annotated

import typer

from audiosubnet.commands import _options as o


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on; any but loopback needs "
                                             "--api-key  [default: 127.0.0.1]", show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port  [default: 8000]", show_default=False)] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to serve (repeat or "
                                                    "comma-separate; the first is the default)  [default: auto]",
                                                    show_default=False)] = None,
    voice: o.VoiceOpt = None,
    clone_model: Annotated[str | None, typer.Option("--clone-model", help="Clones saved voices (auto: pocket if "
                                                    "downloaded, else world; none: no saved voices)",
                                                    show_default=False)] = None,
    device: o.DeviceOpt = None,
    devices: o.DevicesOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="Accepted Bearer key (repeat for "
                                                      "several; or ASN_SERVE__API_KEYS='[\"k1\"]')",
                                                      show_default=False)] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve a non-loopback address without a key.")] = False,
    keep_alive: Annotated[str | None, typer.Option("--keep-alive", help="Unload a model idle this long "
                                                   "(30s, 5m, 1h; -1: never)  [default: 5m]",
                                                   show_default=False)] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit", help="Requests per minute per key (or "
                                                     "client), 0 = none  [default: 600]", show_default=False)] = None,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Largest dynamic batch  [default: 32]",
                                                  show_default=False)] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Engine calls in flight at once  "
                                                    "[default: 1]", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="HTTP worker processes (HTTP, encoding, "
                                                "streaming) in front of the one that runs the models  "
                                                "[default: 1]", show_default=False)] = None,
) -> None:
    """Serve text-to-speech over the OpenAI API, with a page to try it at /.

    POST /v1/audio/speech (mp3, opus, aac, flac, wav, pcm; streamed sentence by
    sentence; stream_format=sse), GET /v1/models, GET/POST/DELETE
    /v1/audio/voices (saved voices: a reference clip + its text, cloned on use),
    /health, /metrics. Models load on first use and unload after --keep-alive idle.
    Loopback is open; any other address needs --api-key (or --insecure).

    Examples:
      asn serve                                    (then open http://127.0.0.1:8000/)
      asn serve --model piper --model espeak:en-us --keep-alive 10m
      asn serve --host 0.0.0.0 --api-key "$KEY" --device cuda --model hf:facebook/mms-tts-eng --workers 4
      asn serve --devices all --model hf:facebook/mms-tts-eng   (one engine process per GPU)
    """
    import importlib.util

    from audiosubnet.config import load_settings
    from audiosubnet.errors import DependencyError

    for package in ("fastapi", "uvicorn", "prometheus_client"):
        if importlib.util.find_spec(package) is None:
            raise DependencyError(package.replace("_", "-"), "serve", "asn serve")
    from audiosubnet.serve.server import run_serve

    flags = {
        **o.placement_flags(device, dtype, cache_budget),
        "devices": devices, "voice": voice, "serve.host": host, "serve.port": port, "serve.models": _split(model),
        "serve.clone_model": clone_model, "serve.api_keys": _split(api_key), "serve.insecure": insecure or None,
        "serve.keep_alive": keep_alive, "serve.rate_limit_per_min": rate_limit, "serve.max_batch": max_batch,
        "serve.concurrency": concurrency, "serve.workers": workers,
    }
    run_serve(load_settings(**flags))
