"""`asn validate` start-up: wallet -> chain -> registered? -> scoring models -> prompts -> the loop.

`build_validator` does every blocking step and returns a ready `Validator`; `run_validator` adds the
HTTP client, signal handling (SIGTERM/SIGINT finish the round in flight, save, exit 0) and wandb.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiosubnet.chain.base import check_registered, open_chain
from audiosubnet.config import Settings
from audiosubnet.validator.loop import LoopConfig, RoundReport, Validator
from audiosubnet.validator.prompts import open_prompt_source

if TYPE_CHECKING:
    from audiosubnet.validator.client import MinerClient

log = logging.getLogger(__name__)


def state_dir(settings: Settings, hotkey: str) -> Path:
    """One folder per (network, netuid, hotkey): two validators on one machine never share state."""
    net = "".join(c if c.isalnum() else "_" for c in settings.subnet.network)
    return settings.home / "validator" / f"{net}-{settings.subnet.netuid}-{hotkey[:12]}"


def loop_config(settings: Settings) -> LoopConfig:
    from audiosubnet.config import view

    v = settings.validator
    return view(v, LoopConfig, netuid=settings.subnet.netuid, deny_hotkeys=tuple(v.deny_hotkeys))


async def build_validator(settings: Settings, *, wallet: Any = None, chain: Any = None, cache: Any = None,
                          on_round: Callable[[RoundReport], None] | None = None) -> tuple[Validator, MinerClient]:
    """Every blocking start-up step. Returns (validator, client); raises typed errors with hints."""
    from audiosubnet.engines.registry import configure_cache
    from audiosubnet.scoring.pipeline import Scoring
    from audiosubnet.validator.client import MinerClient
    from audiosubnet.validator.tasks import CloneTask, TtsTask

    s, v = settings.subnet, settings.validator
    if wallet is None:
        from audiosubnet.chain.bittensor import load_wallet

        wallet = load_wallet(s.wallet_name, s.wallet_hotkey, settings.wallet_folder)
    if chain is None:
        chain = open_chain(settings, wallet)
    uid = await asyncio.to_thread(check_registered, chain, settings, wallet.hotkey)
    me = next((p for p in await asyncio.to_thread(chain.peers, s.netuid) if p.hotkey == wallet.hotkey), None)
    if me is not None and not me.validator_permit:
        log.warning("uid %d has no validator permit yet: miners will refuse its queries and the chain its "
                    "weights until it has one (stake more)", uid)
    cache = cache or configure_cache(settings.device, settings.dtype, settings.cache_budget)
    scoring = Scoring(settings.score, cache=cache)
    log.info("loading scoring models (%s) on %s/%s", ", ".join(f"{k}={m}" for k, m in scoring.plan.models().items()),
             cache.device, cache.dtype)
    await asyncio.to_thread(scoring.warmup, v.clone_ratio > 0)
    prompts = open_prompt_source(v.prompts, use_dataset=v.use_dataset, generated_ratio=v.generated_ratio,
                                 seed=v.seed)
    client = MinerClient(wallet, timeout_s=v.timeout_s, max_bytes=v.max_response_bytes,
                         max_connections=v.max_connections)
    tasks: dict[str, Any] = {"tts": TtsTask()}
    if v.clone_ratio > 0:
        tasks["clone"] = CloneTask(cache, seed=v.seed)
    if v.music_ratio > 0:  # refuses to start without CLAP or the reference folder (one line naming the fix)
        from audiosubnet.validator.music_task import build_music_task

        tasks["music"] = await asyncio.to_thread(build_music_task, v, cache, state_dir(settings, wallet.hotkey))
    validator = Validator(chain=chain, own_hotkey=wallet.hotkey, client=client, scoring=scoring, prompts=prompts,
                          config=loop_config(settings), state_dir=state_dir(settings, wallet.hotkey), tasks=tasks,
                          on_round=on_round)
    log.info("validator uid %d on netuid %d (%s): state in %s, round %d resumed", uid, s.netuid, chain.network,
             validator.state_dir, validator.state.round)
    return validator, client


def run_validator(settings: Settings, *, rounds: int | None = None,
                  on_round: Callable[[RoundReport], None] | None = None) -> int:
    """Blocking: run rounds until `rounds` are done or SIGINT/SIGTERM. Returns the rounds run."""
    return asyncio.run(_main(settings, rounds, on_round))


async def _main(settings: Settings, rounds: int | None, on_round: Callable[[RoundReport], None] | None) -> int:
    v = settings.validator
    wandb = None
    if v.wandb:
        from audiosubnet.validator.wandb_log import WandbLogger

        wandb = WandbLogger(project=v.wandb_project, entity=v.wandb_entity, offline=v.wandb_offline,
                            samples=v.wandb_samples, config={"netuid": settings.subnet.netuid,
                                                             "network": settings.subnet.network})

    def report(r: RoundReport) -> None:
        if on_round:
            on_round(r)
        if wandb:
            wandb.log_round(r)

    validator, client = await build_validator(settings, on_round=report)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    before = validator.state.round
    try:
        await validator.run(rounds=rounds, stop=stop)
    finally:
        await client.aclose()
        with contextlib.suppress(Exception):
            validator.chain.close()
        if wandb:
            wandb.close()
    if stop.is_set():
        log.info("stopped after round %d; state saved", validator.state.round)
    return validator.state.round - before
