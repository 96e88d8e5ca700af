"""The chain seam: what the miner and the validator need from a Bittensor chain, and nothing more.

Two implementations: `BittensorChain` (chain/bittensor.py, the only module that imports bittensor; finney,
test, local, ws://...) and `SimChain` (chain/sim.py, a SQLite file shared by processes; `--network sim`).
`open_chain(settings, wallet)` picks one. Every method is blocking; async callers use `asyncio.to_thread`.

Ids are NewTypes so a uid never passes for a netuid by accident. Stake is a float in the subnet's units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NewType, Protocol, runtime_checkable

from audiosubnet.errors import ChainError, NotRegisteredError

if TYPE_CHECKING:
    from audiosubnet.chain.bittensor import LoadedWallet
    from audiosubnet.config import Settings

Hotkey = NewType("Hotkey", str)  # ss58 address
Coldkey = NewType("Coldkey", str)  # ss58 address
Uid = NewType("Uid", int)
NetUid = NewType("NetUid", int)
Block = NewType("Block", int)

SIM_NETWORK = "sim"


class RateLimitedError(ChainError):
    """The chain refused a call that came too soon (weights, serving). Retry after `retry_in_blocks`."""

    def __init__(self, message: str, hint: str | None = None, retry_in_blocks: int | None = None):
        super().__init__(message, hint)
        self.retry_in_blocks = retry_in_blocks


class ChainUnavailableError(ChainError):
    """The chain (node or simulator file) cannot be reached right now; a later retry may work."""


@dataclass(frozen=True)
class Peer:
    """One neuron of a subnet, as the miner's policy and the validator's loop see it."""

    uid: Uid
    hotkey: Hotkey
    coldkey: Coldkey
    endpoint: str | None  # "ip:port" ("[v6]:port") when served, else None
    validator_permit: bool
    stake: float
    last_update: int = 0
    active: bool = True

    @property
    def url(self) -> str | None:
        return f"http://{self.endpoint}" if self.endpoint else None


@dataclass(frozen=True)
class WeightsResult:
    block: int
    uids: tuple[int, ...]
    weights: tuple[float, ...]
    commit_reveal: bool = False
    message: str = ""


@runtime_checkable
class Chain(Protocol):
    """What `asn mine` and `asn validate` call. Reads need no wallet; writes sign with the chain's hotkey."""

    network: str

    def block(self) -> int:
        """The current block number."""
        ...

    def block_time(self) -> float:
        """Seconds per block."""
        ...

    def peers(self, netuid: int) -> list[Peer]:
        """Every neuron of `netuid`, ordered by uid. ChainError when the subnet does not exist."""
        ...

    def uid_of(self, netuid: int, hotkey: str) -> Uid | None:
        """The uid of `hotkey` on `netuid`, or None when it is not registered."""
        ...

    def publish_endpoint(self, netuid: int, ip: str, port: int) -> None:
        """Advertise ip:port for this chain's hotkey (NotRegisteredError, RateLimitedError)."""
        ...

    def set_weights(self, netuid: int, weights: Mapping[int, float], *, version_key: int = 0) -> WeightsResult:
        """Set this hotkey's weights {uid: weight} (relative; normalised by the chain side).

        Raises NotRegisteredError, RateLimitedError (with retry_in_blocks) or ChainError.
        """
        ...

    def weights_rate_limit(self, netuid: int) -> int:
        """Blocks that must pass between two weight settings by one hotkey."""
        ...

    def last_update(self, netuid: int, uid: int) -> int:
        """Block of this uid's last weight setting (0 when never)."""
        ...

    def tempo(self, netuid: int) -> int:
        """Blocks per epoch."""
        ...

    def close(self) -> None: ...


def blocks_until_weights_allowed(chain: Chain, netuid: int, uid: int) -> int:
    """0 when set_weights may be called now, else the number of blocks to wait."""
    limit = chain.weights_rate_limit(netuid)
    last = chain.last_update(netuid, uid)
    if not limit or not last:
        return 0
    return max(0, limit - (chain.block() - last))


def sim_path(settings: Settings) -> Path:
    p = settings.subnet.sim_path or (settings.home / "sim.db")
    return Path(p).expanduser()


def is_sim(network: str) -> bool:
    return network.strip().lower() == SIM_NETWORK


def open_chain(settings: Settings, wallet: LoadedWallet | None = None, *, create: bool = False) -> Chain:
    """The Chain for `settings.subnet.network`: SimChain for `sim`, else BittensorChain.

    `wallet` is what `chain.bittensor.load_wallet` returns (needed for publish_endpoint/set_weights).
    For `sim`, `create=True` creates the simulator file if it is missing.
    """
    network = settings.subnet.network.strip()
    hotkey = getattr(wallet, "hotkey", None)
    if is_sim(network):
        from audiosubnet.chain.sim import SimChain

        return SimChain(sim_path(settings), hotkey=hotkey, create=create)
    from audiosubnet.chain.bittensor import BittensorChain

    return BittensorChain(network, wallet=wallet,
                          register_hint=f"Register it with `{register_hint(settings, settings.subnet.netuid)}`.")


def register_hint(settings: Settings, netuid: int) -> str:
    """The exact command that registers this wallet's hotkey on `netuid` (btcli 11 spelling, or `asn sim`)."""
    s = settings.subnet
    default = settings.home / "wallets" if is_sim(s.network) else Path("~/.bittensor/wallets")
    custom_path = settings.wallet_folder.expanduser() != default.expanduser()
    if is_sim(s.network):
        path = f" --wallet.path {s.wallet_path}" if custom_path else ""
        return (f"asn sim register --netuid {netuid} --wallet.name {s.wallet_name} "
                f"--wallet.hotkey {s.wallet_hotkey}{path}")
    path = f" --wallet-path {s.wallet_path}" if custom_path else ""
    net = "" if s.network == "finney" else f" --network {s.network}"
    return (f"btcli subnets register --netuid {netuid} --wallet {s.wallet_name} "
            f"--wallet-hotkey {s.wallet_hotkey}{path}{net}")


def check_registered(chain: Chain, settings: Settings, hotkey: str) -> int:
    """This wallet's uid on the subnet, or NotRegisteredError naming the command that registers it."""
    netuid = settings.subnet.netuid
    uid = chain.uid_of(netuid, hotkey)
    if uid is None:
        s = settings.subnet
        raise NotRegisteredError(
            f"hotkey {hotkey} ({s.wallet_name}/{s.wallet_hotkey}) is not registered on netuid {netuid} "
            f"({s.network})", hint=f"Register it with `{register_hint(settings, netuid)}`.")
    return int(uid)
