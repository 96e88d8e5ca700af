"""`asn mine`: serve text-to-speech to the subnet's validators (FastAPI + uvicorn, btauth/1)."""

from __future__ import annotations

from typing import Annotated

import typer

from audiosubnet.commands import _options as o


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def mine(
    wallet_name: o.WalletNameOpt = None,
    wallet_hotkey: o.WalletHotkeyOpt = None,
    wallet_path: o.WalletPathOpt = None,
    network: o.NetworkOpt = None,
    netuid: o.NetuidOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on  [default: 0.0.0.0]",
                                             show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port to listen on  [default: 8091]",
                                             show_default=False)] = None,
    external_ip: Annotated[str | None, typer.Option("--external-ip", help="IP to publish on chain  [default: "
                                                    "detected; 127.0.0.1 for sim]", show_default=False)] = None,
    external_port: Annotated[int | None, typer.Option("--external-port", help="Port to publish  [default: --port]",
                                                      show_default=False)] = None,
    model: o.ModelOpt = None,
    voice: o.VoiceOpt = None,
    clone_model: Annotated[str | None, typer.Option("--clone-model", help="Also serve voice cloning on /v1/clone "
                                                    "with this model (auto: pocket if downloaded, else world).",
                                                    show_default=False)] = None,
    music_model: Annotated[str | None, typer.Option("--music-model", help="Also serve text-to-music on /v1/music "
                                                    "with this model (e.g. musicgen:facebook/musicgen-small).",
                                                    show_default=False)] = None,
    device: o.DeviceOpt = None,
    devices: o.DevicesOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Engine calls in flight at once  "
                                                    "[default: 1]", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="HTTP worker processes in front of the "
                                               "engine (verify, parse, respond in parallel)  [default: 1]",
                                               show_default=False)] = None,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Largest dynamic batch  [default: 32]",
                                                  show_default=False)] = None,
    max_wait_ms: Annotated[float | None, typer.Option("--max-wait-ms", help="How long a batch waits to fill  "
                                                      "[default: 5]", show_default=False)] = None,
    queue_size: Annotated[int | None, typer.Option("--queue-size", help="Requests admitted before 429  "
                                                   "[default: 256]", show_default=False)] = None,
    min_stake: Annotated[float | None, typer.Option("--min-validator-stake", help="Refuse validators with less "
                                                    "stake  [default: 1000 on finney, 0 on test/local/sim]",
                                                    show_default=False)] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit", help="Requests per minute per validator, "
                                                     "0 = none  [default: 600]", show_default=False)] = None,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Hotkey always admitted (repeat or "
                                                    "comma-separate).", show_default=False)] = None,
    deny: Annotated[list[str] | None, typer.Option("--deny", help="Hotkey always refused (repeat or "
                                                   "comma-separate).", show_default=False)] = None,
    no_publish: Annotated[bool, typer.Option("--no-publish", help="Do not publish ip:port on chain "
                                             "(it is already published, or a proxy does it).")] = False,
) -> None:
    """Serve text-to-speech to the subnet's validators.

    At start: the hotkey must be registered on the netuid (else the exact
    register command is printed, exit status 2); the model is loaded and
    warmed up; ip:port is published on chain; then signed (btauth/1)
    requests from registered validators with enough stake are served until
    Ctrl-C or SIGTERM, which drains in-flight requests. Metrics: GET /metrics.

    Examples:
      asn mine --wallet.name miner --wallet.hotkey default --netuid 16
      asn mine --network test --netuid 250 --external-ip 203.0.113.7
      asn mine --model hf:facebook/mms-tts-eng --device cuda --max-batch 64 --workers 4
      asn mine --model hf:facebook/mms-tts-eng --devices all --max-batch 64 --workers 8   (every GPU)
      asn mine --clone-model auto          (also voice cloning on /v1/clone)
      asn mine --music-model musicgen:facebook/musicgen-small --device cuda   (also music on /v1/music)
      asn mine --network sim --wallet.name m1 --port 9001   (see asn sim -h)
    """
    from audiosubnet.config import load_settings
    from audiosubnet.miner.server import run_miner

    flags = {
        **o.subnet_flags(wallet_name, wallet_hotkey, wallet_path, network, netuid),
        **o.placement_flags(device, dtype, cache_budget),
        "model": model, "voice": voice, "mine.clone_model": clone_model, "mine.music_model": music_model,
        "devices": devices,
        "mine.host": host, "mine.port": port, "mine.external_ip": external_ip, "mine.external_port": external_port,
        "mine.concurrency": concurrency, "mine.workers": workers, "mine.max_batch": max_batch,
        "mine.max_wait_ms": max_wait_ms,
        "mine.queue_size": queue_size, "mine.min_validator_stake": min_stake, "mine.rate_limit_per_min": rate_limit,
        "mine.allow_hotkeys": _split(allow), "mine.deny_hotkeys": _split(deny),
        "mine.publish": False if no_publish else None,
    }
    run_miner(load_settings(**flags))
