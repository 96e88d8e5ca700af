"""`asn sim`: a simulated subnet in a SQLite file, for running miners and validators locally (`--network sim`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, err, out, print_json

if TYPE_CHECKING:
    from audiosubnet.chain.sim import SimChain
    from audiosubnet.config import Settings

app = AsnTyper(help="""A simulated subnet for local miners and validators (`--network sim`).

One SQLite file, no node; blocks follow the wall clock; several processes share it.

Example: a local subnet with one validator and two miners
  asn sim init --block-seconds 2 --weights-rate-limit 5
  asn sim wallet val && asn sim wallet m1 && asn sim wallet m2
  asn sim register --wallet.name val --validator --stake 1000
  asn sim register --wallet.name m1 && asn sim register --wallet.name m2
  asn mine --network sim --wallet.name m1 --port 9001 &
  asn mine --network sim --wallet.name m2 --port 9002 --model espeak:en-us &
  asn validate --network sim --wallet.name val
  asn sim list; asn sim weights
""")

SimPathOpt = Annotated[Path | None, typer.Option(
    "--sim-path", help="The simulator file  [default: $ASN_HOME/sim.db]", show_default=False)]


def _settings(sim_path: Path | None, **flags: object) -> Settings:
    from audiosubnet.config import load_settings

    return load_settings(**{**flags, "subnet.sim_path": sim_path, "subnet.network": "sim"})  # always the sim


def _chain(sim_path: Path | None, **flags: object) -> tuple[Settings, SimChain]:
    from audiosubnet.chain.base import sim_path as path_of
    from audiosubnet.chain.sim import SimChain

    s = _settings(sim_path, **flags)
    return s, SimChain(path_of(s), create=False)


@app.command("init")
def init(
    netuid: o.NetuidOpt = None,
    block_seconds: Annotated[float | None, typer.Option("--block-seconds", help="Seconds per block  [default: "
                                                        "12]", show_default=False)] = None,
    tempo: Annotated[int | None, typer.Option("--tempo", help="Blocks per epoch  [default: 360]",
                                              show_default=False)] = None,
    weights_rate_limit: Annotated[int | None, typer.Option("--weights-rate-limit", help="Blocks between two weight "
                                                           "settings of one hotkey  [default: 100]",
                                                           show_default=False)] = None,
    max_uids: Annotated[int | None, typer.Option("--max-uids", help="Uids per subnet  [default: 256]",
                                                 show_default=False)] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Erase everything and start from block 0.")] = False,
    sim_path: SimPathOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Create the simulator file and a subnet (idempotent; --reset starts over).

    Examples:
      asn sim init
      asn sim init --netuid 16 --block-seconds 1 --weights-rate-limit 10 --reset
    """
    from audiosubnet.chain.base import sim_path as path_of
    from audiosubnet.chain.sim import (
        DEFAULT_BLOCK_SECONDS,
        DEFAULT_MAX_UIDS,
        DEFAULT_TEMPO,
        DEFAULT_WEIGHTS_RATE_LIMIT,
        SimChain,
    )
    from audiosubnet.errors import UsageError

    s = _settings(sim_path, **{"subnet.netuid": netuid})
    path = path_of(s)
    existed = path.is_file()
    chain = SimChain(path, create=True)
    if not existed or reset:
        chain.init(block_seconds=block_seconds or (chain.block_time() if existed else DEFAULT_BLOCK_SECONDS),
                   reset=True)
    elif block_seconds and block_seconds != chain.block_time():
        raise UsageError(f"{path} runs {chain.block_time():g} s blocks", hint="Add --reset to start over with "
                         f"{block_seconds:g} s blocks (this erases registrations and weights).")
    current = chain.subnet(s.subnet.netuid)
    sn = chain.create_subnet(
        s.subnet.netuid, update=True,
        tempo=tempo if tempo is not None else (current.tempo if current else DEFAULT_TEMPO),
        weights_rate_limit=weights_rate_limit if weights_rate_limit is not None else (
            current.weights_rate_limit if current else DEFAULT_WEIGHTS_RATE_LIMIT),
        max_uids=max_uids if max_uids is not None else (current.max_uids if current else DEFAULT_MAX_UIDS))
    if json_out:
        print_json({"path": str(chain.path), "block": chain.block(), "block_seconds": chain.block_time(),
                    "netuid": sn.netuid, "tempo": sn.tempo, "weights_rate_limit": sn.weights_rate_limit,
                    "max_uids": sn.max_uids})
        return
    rate = f"weights every {sn.weights_rate_limit} blocks" if sn.weights_rate_limit > 0 else "no weights rate limit"
    err.print(f"simulated chain {chain.path}: block {chain.block()} ({chain.block_time():g} s blocks), netuid "
              f"{sn.netuid} (tempo {sn.tempo}, {rate}, {sn.max_uids} uids)", highlight=False)


@app.command("wallet")
def wallet(
    name: Annotated[str, typer.Argument(help="Wallet (coldkey) name.")],
    hotkey: Annotated[str, typer.Option("--hotkey", help="Hotkey name.")] = "default",
    wallet_path: o.WalletPathOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Create an UNENCRYPTED test wallet for the simulator (real wallets: `btcli wallet create`).

    It goes to $ASN_HOME/wallets (not ~/.bittensor/wallets), where `--network sim` commands look
    for wallets. An existing wallet is reused. Example:
      asn sim wallet m1 --hotkey default
    """
    from audiosubnet.chain.bittensor import create_wallet

    s = _settings(None, **{"subnet.wallet_path": wallet_path})
    w = create_wallet(name, hotkey, s.wallet_folder)
    if json_out:
        print_json({"name": name, "hotkey_name": hotkey, "hotkey": str(w.hotkey),
                    "coldkey": str(w.coldkey) if w.coldkey else None, "path": str(w.path)})
        return
    out.print(w.hotkey, highlight=False)
    err.print(f"wallet {name}/{hotkey} in {w.path} (unencrypted: for the simulator only)", highlight=False)


@app.command("register")
def register(
    wallet_name: o.WalletNameOpt = None,
    wallet_hotkey: o.WalletHotkeyOpt = None,
    wallet_path: o.WalletPathOpt = None,
    hotkey_ss58: Annotated[str | None, typer.Option("--hotkey-ss58", help="Register this address instead of "
                                                    "a wallet's hotkey.", show_default=False)] = None,
    netuid: o.NetuidOpt = None,
    validator: Annotated[bool, typer.Option("--validator", help="Give it a validator permit.")] = False,
    stake: Annotated[float, typer.Option("--stake", help="Stake (subnet units).")] = 0.0,
    sim_path: SimPathOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Register a hotkey on the simulated subnet (again: updates stake and permit).

    Examples:
      asn sim register --wallet.name m1
      asn sim register --wallet.name val --validator --stake 1000
      asn sim register --hotkey-ss58 5F... --netuid 16
    """
    from audiosubnet.errors import UsageError

    s, chain = _chain(sim_path, **o.subnet_flags(wallet_name, wallet_hotkey, wallet_path, None, netuid))
    coldkey = None
    if hotkey_ss58:
        from audiosubnet.chain.bittensor import is_ss58

        if not is_ss58(hotkey_ss58):
            raise UsageError(f"'{hotkey_ss58}' is not an ss58 address")
        hotkey = hotkey_ss58
    else:
        from audiosubnet.chain.bittensor import load_wallet

        w = load_wallet(s.subnet.wallet_name, s.subnet.wallet_hotkey, s.wallet_folder)
        hotkey, coldkey = w.hotkey, w.coldkey
    uid = chain.register(s.subnet.netuid, hotkey, coldkey, stake=stake, validator_permit=validator)
    if json_out:
        print_json({"uid": uid, "hotkey": str(hotkey), "netuid": s.subnet.netuid, "validator_permit": validator,
                    "stake": stake})
        return
    role = f"validator (stake {stake:g})" if validator else "miner"
    err.print(f"{hotkey} is uid {uid} on netuid {s.subnet.netuid} as a {role}", highlight=False)
    out.print(str(uid), highlight=False)


@app.command("deregister")
def deregister(
    hotkey_ss58: Annotated[str, typer.Argument(help="The hotkey address.")],
    netuid: o.NetuidOpt = None,
    sim_path: SimPathOpt = None,
) -> None:
    """Remove a hotkey from the simulated subnet. Example: asn sim deregister 5F..."""
    s, chain = _chain(sim_path, **{"subnet.netuid": netuid})
    found = chain.deregister(s.subnet.netuid, hotkey_ss58)
    err.print(f"{'deregistered' if found else 'not registered:'} {hotkey_ss58}", highlight=False)
    raise typer.Exit(0 if found else 1)


@app.command("list")
def list_(
    netuid: o.NetuidOpt = None,
    json_out: o.JsonOpt = False,
    sim_path: SimPathOpt = None,
) -> None:
    """The neurons of the simulated subnet: uid, hotkey, stake, permit, endpoint, last weights block.

    Example:
      asn sim list --json
    """
    s, chain = _chain(sim_path, **{"subnet.netuid": netuid})
    peers = chain.peers(s.subnet.netuid)
    block = chain.block()
    if json_out:
        print_json({"block": block, "netuid": s.subnet.netuid,
                    "neurons": [{"uid": p.uid, "hotkey": p.hotkey, "coldkey": p.coldkey, "stake": p.stake,
                                 "validator_permit": p.validator_permit, "endpoint": p.endpoint,
                                 "last_update": p.last_update} for p in peers]})
        return
    from rich.table import Table

    t = Table(title=f"netuid {s.subnet.netuid} at block {block} ({chain.path})")
    for col in ("uid", "hotkey", "stake", "permit", "endpoint", "last weights"):
        t.add_column(col, justify="right" if col in ("uid", "stake", "last weights") else "left")
    for p in peers:
        t.add_row(str(p.uid), p.hotkey, f"{p.stake:g}", "yes" if p.validator_permit else "", p.endpoint or "-",
                  str(p.last_update or "-"))
    out.print(t)


@app.command("weights")
def weights(
    netuid: o.NetuidOpt = None,
    history: Annotated[bool, typer.Option("--history", help="Every weight setting, not only the latest.")] = False,
    json_out: o.JsonOpt = False,
    sim_path: SimPathOpt = None,
) -> None:
    """Weights set on the simulated subnet (latest per validator), normalised to sum 1.

    Example:
      asn sim weights --json
    """
    s, chain = _chain(sim_path, **{"subnet.netuid": netuid})
    rows = chain.weights(s.subnet.netuid, latest=not history)
    if json_out:
        print_json([{"uid": r.uid, "hotkey": r.hotkey, "block": r.block,
                     "weights": {str(k): v for k, v in r.weights.items()}} for r in rows])
        return
    if not rows:
        err.print("no weights set yet")
        return
    for r in rows:
        top = sorted(r.weights.items(), key=lambda kv: -kv[1])
        shown = "  ".join(f"{u}:{w:.3f}" for u, w in top[:16]) + ("  ..." if len(top) > 16 else "")
        out.print(f"uid {r.uid} at block {r.block}: {shown}", highlight=False)
