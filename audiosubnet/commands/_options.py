"""Options shared by several commands, declared once.

Every option defaults to None, meaning "not given": the settings (env, config file, default)
then decide. Flags are passed to `load_settings` with dotted keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model id, e.g. piper:en_US-joe-medium, espeak:en-us, hf:facebook/mms-tts-eng.",
    show_default=False)]
VoiceOpt = Annotated[str | None, typer.Option("--voice", help="Voice/speaker of the model.", show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto | cpu | cuda | cuda:N  [default: auto]", show_default=False)]
DevicesOpt = Annotated[str | None, typer.Option(
    "--devices", help="One engine process per device, behind one queue: all (every visible GPU) | 0,1,... "
    "(CUDA indices) | cpu:N (N CPU engine processes)  [default: one engine on --device]", show_default=False)]
DTypeOpt = Annotated[str | None, typer.Option(
    "--dtype", help="auto | float32 | float16 | bfloat16  [default: auto: fp16/bf16 on CUDA]",
    show_default=False)]
BudgetOpt = Annotated[str | None, typer.Option(
    "--cache-budget", help="Model cache budget, e.g. 8GiB  [default: 90% of GPU / 50% of RAM]",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout; no progress bars.")]

WalletNameOpt = Annotated[str | None, typer.Option(
    "--wallet.name", "--wallet-name", help="Bittensor wallet (coldkey) name  [default: default]",
    show_default=False)]
WalletHotkeyOpt = Annotated[str | None, typer.Option(
    "--wallet.hotkey", "--wallet-hotkey", help="Hotkey name  [default: default]", show_default=False)]
WalletPathOpt = Annotated[Path | None, typer.Option(
    "--wallet.path", "--wallet-path", help="Wallets folder  [default: ~/.bittensor/wallets; with --network "
    "sim: $ASN_HOME/wallets]",
    show_default=False)]
NetworkOpt = Annotated[str | None, typer.Option(
    "--network", "--subtensor.network", help="finney | test | local | ws://host:port | sim  [default: finney]",
    show_default=False)]
NetuidOpt = Annotated[int | None, typer.Option("--netuid", help="Subnet uid  [default: 16]", show_default=False)]


def placement_flags(device: str | None, dtype: str | None, budget: str | None) -> dict[str, Any]:
    return {"device": device, "dtype": dtype, "cache_budget": budget}


def subnet_flags(name: str | None, hotkey: str | None, path: Path | None, network: str | None,
                 netuid: int | None) -> dict[str, Any]:
    return {"subnet.wallet_name": name, "subnet.wallet_hotkey": hotkey, "subnet.wallet_path": path,
            "subnet.network": network, "subnet.netuid": netuid}

# `--ray` on the batch jobs and `asn score DIR` (docs/scale.md)
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (pip install 'audiosubnet\\[ray]'): "
                                      "RAY_ADDRESS, else the cluster `ray start` left here, else a new local one.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", metavar="ADDRESS", help="The Ray cluster (host:6379, ray://host:10001, local, auto); implies "
    "--ray.", show_default=False)]
RayReplicasOpt = Annotated[int | None, typer.Option(
    "--ray-replicas", min=1, help="Actors  [default: one per GPU, or one per CPU]", show_default=False)]
