"""`asn validate`: query miners, score their audio, keep moving averages, set weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import err, interactive

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from audiosubnet.validator.loop import RoundReport


def validate(
    wallet_name: o.WalletNameOpt = None,
    wallet_hotkey: o.WalletHotkeyOpt = None,
    wallet_path: o.WalletPathOpt = None,
    network: o.NetworkOpt = None,
    netuid: o.NetuidOpt = None,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Scoring models: auto (GPU stack on CUDA, offline "
                                               "on CPU) | offline | gpu", show_default=False)] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="CSV of prompts (tts_prompts.csv format) "
                                                 "instead of the dataset", show_default=False)] = None,
    generated_ratio: Annotated[float | None, typer.Option("--generated-ratio", help="Share of freshly generated "
                                                          "prompts  [default: 0.5]", show_default=False)] = None,
    clone_ratio: Annotated[float | None, typer.Option("--clone-ratio", help="Share of voice-clone rounds  "
                                                      "[default: 0.25]", show_default=False)] = None,
    music_ratio: Annotated[float | None, typer.Option("--music-ratio", help="Share of text-to-music rounds (needs "
                                                      "--music-references and the CLAP model)  [default: 0]",
                                                      show_default=False)] = None,
    music_references: Annotated[Path | None, typer.Option("--music-references", help="Folder of your private "
                                                          "reference music clips (music quality score).",
                                                          show_default=False)] = None,
    round_interval: Annotated[float | None, typer.Option("--round-interval", help="Seconds between round starts  "
                                                         "[default: 60]", show_default=False)] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Moving-average weight of the newest round  "
                                                "[default: 0.1]", show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Per-request deadline cap, seconds  "
                                                  "[default: 12]", show_default=False)] = None,
    weights_every: Annotated[int | None, typer.Option("--weights-every", help="Set weights every N rounds  "
                                                      "[default: 20]", show_default=False)] = None,
    miners_per_round: Annotated[int | None, typer.Option("--miners-per-round", help="0 = all  [default: 0]",
                                                         show_default=False)] = None,
    no_weights: Annotated[bool, typer.Option("--no-set-weights", help="Score but never set weights.")] = False,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Stop after N rounds (default: run until "
                                               "stopped).", show_default=False)] = None,
    wandb: Annotated[bool, typer.Option("--wandb", help="Log rounds to Weights & Biases.")] = False,
    wandb_project: Annotated[str | None, typer.Option("--wandb-project", show_default=False)] = None,
    wandb_entity: Annotated[str | None, typer.Option("--wandb-entity", show_default=False)] = None,
    wandb_offline: Annotated[bool, typer.Option("--wandb-offline", help="wandb offline mode (sync later).")] = False,
) -> None:
    """Run a validator: rounds of signed queries, scoring, moving averages, weights.

    Examples:
      asn validate --wallet.name val --wallet.hotkey default --netuid 16
      asn validate --network sim --rounds 3 --round-interval 5
      asn validate --network test --prompts my_prompts.csv --wandb --wandb-project my-validator

    State (moving averages, round, last weights) lives in $ASN_HOME/validator/ and survives
    restarts. SIGTERM or Ctrl-C finishes the round in flight, saves and exits.
    """
    from audiosubnet.config import load_settings
    from audiosubnet.validator.app import run_validator

    flags = {**o.subnet_flags(wallet_name, wallet_hotkey, wallet_path, network, netuid),
             **o.placement_flags(device, dtype, cache_budget), "score.preset": preset,
             "validator.prompts": prompts, "validator.generated_ratio": generated_ratio,
             "validator.clone_ratio": clone_ratio, "validator.round_interval_s": round_interval,
             "validator.music_ratio": music_ratio, "validator.music_references": music_references,
             "validator.alpha": alpha, "validator.timeout_s": timeout,
             "validator.weights_every": weights_every, "validator.miners_per_round": miners_per_round,
             "validator.set_weights": False if no_weights else None, "validator.wandb": wandb or None,
             "validator.wandb_project": wandb_project, "validator.wandb_entity": wandb_entity,
             "validator.wandb_offline": wandb_offline or None}
    settings = load_settings(**flags)
    with RoundView(live=interactive()) as view:
        run_validator(settings, rounds=rounds, on_round=view.update)


class RoundView:
    """A Rich live table on a terminal; one log line per round (and per miner) otherwise."""

    def __init__(self, live: bool):
        self.live_enabled = live
        self._live: Live | None = None

    def __enter__(self) -> RoundView:
        if self.live_enabled:
            from rich.live import Live

            self._live = Live(console=err, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, r: RoundReport) -> None:
        import logging

        if self._live is None:
            log = logging.getLogger("audiosubnet.validator")
            weights = f"; weights set at block {r.weights_block}" if r.weights_block is not None else (
                f"; weights: {r.weights_error}" if r.weights_error else "")
            ok = sum(m.status == "ok" for m in r.outcomes)
            log.info("round %d (%s, block %d): %d/%d answered well in %.1f s (query %.1f s, scoring %.1f s)%s",
                     r.round, r.task, r.block, ok, len(r.outcomes), r.total_s, r.query_s, r.score_s, weights)
            for m in sorted(r.outcomes, key=lambda m: -m.ema):
                lat = f"{m.latency_s:.2f}s" if m.latency_s is not None else "-"
                log.info("  uid %3d %s score %.3f ema %.3f %s %s%s", m.uid, m.hotkey[:8], m.score, m.ema, lat,
                         m.status, f" ({m.reason})" if m.reason else "")
            return
        self._live.update(self.table(r))

    @staticmethod
    def table(r: RoundReport) -> Table:
        from rich.table import Table

        t = Table(title=f"round {r.round} · {r.task} · block {r.block} · {r.total_s:.1f} s"
                        + (f" · weights @ {r.weights_block}" if r.weights_block is not None else ""),
                  caption=f"{len(r.prompts)} prompts, e.g. {r.prompt[:80]}")
        for c in ("uid", "hotkey", "last score", "EMA", "latency", "status"):
            t.add_column(c, justify="right" if c in ("uid", "last score", "EMA", "latency") else "left")
        for m in sorted(r.outcomes, key=lambda m: -m.ema):
            status = m.status + (f": {m.reason[:50]}" if m.reason else "")
            t.add_row(str(m.uid), m.hotkey[:10], f"{m.score:.3f}", f"{m.ema:.3f}",
                      f"{m.latency_s:.2f}s" if m.latency_s is not None else "-",
                      status if m.status == "ok" else f"[red]{status}[/]")
        return t
