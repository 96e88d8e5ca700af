"""Everything that touches the bittensor SDK (11.3): wallets, btauth/1 signing and verification, the chain.

This is the ONLY module of the package that imports `bittensor` (a test enforces it). The rest of the
project sees project types: `LoadedWallet`, `VerifiedCaller`, `AuthFailure`, `Peer`, `WeightsResult` and the
typed errors of `audiosubnet.errors` / `audiosubnet.chain.base`.

- Wallets are bittensor wallet files (`btcli wallet create`); `load_wallet` reads the hotkey once.
- `sign_request` / `verify_request` wrap `bittensor.http_auth` (btauth/1, receiver-bound, nonce store).
- `BittensorChain` wraps a blocking `bt.Subtensor` (`substrate=` injects a fake in tests); SDK errors become
  one-line `ChainError`s with the next step in the hint.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import bittensor as bt
from bittensor import http_auth

from audiosubnet.chain.base import (
    ChainUnavailableError,
    Coldkey,
    Hotkey,
    Peer,
    RateLimitedError,
    Uid,
    WeightsResult,
)
from audiosubnet.errors import ChainError, ConfigError, NotRegisteredError, WalletError

if TYPE_CHECKING:
    from bittensor.keyfiles import Keypair  # the native backend's class: untyped (Any)

log = logging.getLogger(__name__)
T = TypeVar("T")

AUTH_HEADERS = (http_auth.HEADER_VERSION, http_auth.HEADER_HOTKEY, http_auth.HEADER_RECEIVER,
                http_auth.HEADER_NONCE, http_auth.HEADER_CRYPTO, http_auth.HEADER_SIGNATURE)
DEFAULT_MAX_AGE = http_auth.DEFAULT_MAX_AGE
DEFAULT_ALLOWED_SKEW = http_auth.DEFAULT_ALLOWED_SKEW
DEFAULT_WALLETS = Path("~/.bittensor/wallets")


# ---- wallets --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedWallet:
    """A wallet whose hotkey is unlocked (hotkeys are stored unencrypted by btcli)."""

    name: str
    hotkey_name: str
    path: Path
    hotkey: Hotkey
    coldkey: Coldkey | None
    keypair: Keypair  # the hotkey's keypair (signs requests)
    wallet: bt.Wallet  # signs extrinsics

    def __repr__(self) -> str:
        return f"LoadedWallet({self.name}/{self.hotkey_name} {self.hotkey})"


def _wallet_cmd(name: str, hotkey: str, path: Path) -> str:
    extra = "" if Path(path).expanduser() == DEFAULT_WALLETS.expanduser() else f" --wallet-path {path}"
    return f"btcli wallet new-hotkey --wallet {name} --wallet-hotkey {hotkey}{extra}"


def load_wallet(name: str = "default", hotkey: str = "default", path: str | Path = "~/.bittensor/wallets"
                ) -> LoadedWallet:
    """Read a bittensor wallet's hotkey (and public coldkey). WalletError with the btcli command when missing."""
    folder = Path(path).expanduser()
    w = bt.Wallet(name, hotkey, path=str(folder))
    hot_file = folder / name / "hotkeys" / hotkey
    if not hot_file.is_file():
        raise WalletError(f"no hotkey '{hotkey}' in wallet '{name}' (looked for {hot_file})",
                          hint=f"Create it with `{_wallet_cmd(name, hotkey, folder)}`, or pass --wallet.name/"
                               f"--wallet.hotkey/--wallet.path.")
    try:
        keypair = w.hotkey
    except Exception as e:  # KeyfileError, WrongPasswordError, PermissionError, corrupt JSON...
        raise WalletError(f"cannot read the hotkey file {hot_file}: {_one_line(e)}",
                          hint="Hotkeys must be readable and unencrypted (btcli creates them so).") from e
    coldkey = None
    try:
        coldkey = Coldkey(w.coldkeypub.ss58_address)
    except Exception:  # a hotkey-only machine (validators often keep the coldkey elsewhere)
        log.debug("wallet %s has no readable coldkeypub.txt", name)
    return LoadedWallet(name, hotkey, folder, Hotkey(keypair.ss58_address), coldkey, keypair, w)


def create_wallet(name: str, hotkey: str = "default", path: str | Path = "~/.bittensor/wallets", *,
                  overwrite: bool = False) -> LoadedWallet:
    """Create an UNENCRYPTED coldkey + hotkey with the SDK's own API (tests and the simulator only).

    Real wallets: `btcli wallet create`. An existing wallet is loaded, not replaced, unless `overwrite`.
    """
    folder = Path(path).expanduser()
    w = bt.Wallet(name, hotkey, path=str(folder))
    if not (folder / name / "coldkeypub.txt").is_file() or overwrite:
        w.create_new_coldkey(use_password=False, overwrite=overwrite, suppress=True)
    if not (folder / name / "hotkeys" / hotkey).is_file() or overwrite:
        w.create_new_hotkey(use_password=False, overwrite=overwrite, suppress=True)
    return load_wallet(name, hotkey, folder)


def is_ss58(address: str) -> bool:
    try:
        bt.sp_core.ss58_decode(address)
        return True
    except Exception:
        return False


# ---- btauth/1 -------------------------------------------------------------------------------------------
# A nonce is a time in ns whose low NONCE_TAG_BITS carry a tag of this process: its pid mixed with a hash of
# the machine, drawn again after a fork. Processes of one machine signing for one hotkey in the same instant get
# different nonces (their pids differ; time_ns alone collides across processes and the miner refuses the second
# as a replay), and other machines most likely differ by their hash. Within a process the nonce is strictly
# increasing under a lock, so coroutines and threads never share one. The tag costs 2**12 ns (4 us) of
# resolution: only a process signing more than ~240,000 requests/s would run ahead of the clock.
NONCE_TAG_BITS = 12
_TAG_MASK = (1 << NONCE_TAG_BITS) - 1
_nonce_lock = threading.Lock()
_last_slot = 0
_tag = 0


def _machine_hash() -> int:
    import hashlib
    import socket

    ident = socket.gethostname().encode()
    with contextlib.suppress(OSError):
        ident += Path("/etc/machine-id").read_bytes()
    return int.from_bytes(hashlib.blake2b(ident, digest_size=4).digest(), "big")


def _new_tag() -> None:
    global _tag, _last_slot
    _tag = (os.getpid() ^ _machine_hash()) & _TAG_MASK
    _last_slot = 0


_new_tag()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_tag)


def _next_nonce() -> int:
    """A unique nonce for this hotkey: time_ns with this process's tag in its low bits, strictly increasing."""
    global _last_slot
    with _nonce_lock:
        slot = max(time.time_ns() >> NONCE_TAG_BITS, _last_slot + 1)
        _last_slot = slot
        return (slot << NONCE_TAG_BITS) | _tag


def sign_request(wallet: LoadedWallet | Keypair, method: str, target: str, body: bytes, receiver: str, *,
                 nonce_ns: int | None = None) -> dict[str, str]:
    """btauth/1 headers for one request to `receiver` (the miner's hotkey). `target` is the path + query
    exactly as sent. Each retry must be signed again (a fresh nonce)."""
    signer = wallet.keypair if isinstance(wallet, LoadedWallet) else wallet
    return http_auth.sign(signer, method=method, path=target, body=body, receiver_ss58=receiver,
                          nonce_ns=_next_nonce() if nonce_ns is None else nonce_ns)


@dataclass(frozen=True)
class VerifiedCaller:
    hotkey: Hotkey
    nonce_ns: int


class AuthFailure(Exception):
    """btauth/1 verification failed. `reason`: malformed | wrong_receiver | stale | bad_signature | replayed.
    The message never echoes the signature and is safe to return to the caller."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


_AUTH_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (http_auth.MalformedAuth, "malformed"), (http_auth.WrongReceiver, "wrong_receiver"),
    (http_auth.StaleRequest, "stale"), (http_auth.ReplayedRequest, "replayed"),
    (http_auth.BadSignature, "bad_signature"),
)


def check_auth_headers(headers: Mapping[str, str], self_hotkey: str, *, max_age: float = DEFAULT_MAX_AGE,
                       allowed_skew: float = DEFAULT_ALLOWED_SKEW, now_ns: int | None = None) -> Hotkey:
    """The checks of `verify_request` that need no body: header shape, receiver, freshness. Returns the claimed
    hotkey (not yet proven: the signature covers the body) so a server can refuse a caller before reading an
    upload. Raises AuthFailure as `verify_request` does."""
    h = {k.lower(): v for k, v in headers.items()}
    if h.get(http_auth.HEADER_VERSION.lower()) != http_auth.VERSION:
        raise AuthFailure("malformed", f"missing or unsupported {http_auth.HEADER_VERSION}")
    sender = h.get(http_auth.HEADER_HOTKEY.lower()) or ""
    if not sender or len(sender) > 64 or not is_ss58(sender):
        raise AuthFailure("malformed", f"missing or invalid {http_auth.HEADER_HOTKEY}")
    raw_nonce = h.get(http_auth.HEADER_NONCE.lower()) or ""
    if not (0 < len(raw_nonce) <= 20 and raw_nonce.isascii() and raw_nonce.isdigit()):
        raise AuthFailure("malformed", f"{http_auth.HEADER_NONCE} is not a decimal integer")
    if not h.get(http_auth.HEADER_SIGNATURE.lower()):
        raise AuthFailure("malformed", f"missing {http_auth.HEADER_SIGNATURE}")
    receiver = h.get(http_auth.HEADER_RECEIVER.lower())
    if receiver != self_hotkey:
        raise AuthFailure("wrong_receiver", "request was not signed for this miner's hotkey")
    nonce = int(raw_nonce)
    now = time.time_ns() if now_ns is None else now_ns
    if now - nonce > max_age * 1e9:
        raise AuthFailure("stale", f"nonce is older than the {max_age:g}s freshness window")
    if nonce - now > allowed_skew * 1e9:
        raise AuthFailure("stale", f"nonce is more than {allowed_skew:g}s in the future")
    return Hotkey(sender)


def verify_request(headers: Mapping[str, str], body: bytes, method: str, target: str, self_hotkey: str, *,
                   nonce_store: http_auth.NonceStore, max_age: float = DEFAULT_MAX_AGE,
                   allowed_skew: float = DEFAULT_ALLOWED_SKEW) -> VerifiedCaller:
    """Verify a received request (raw body, raw target) against our own hotkey. Raises AuthFailure.

    `nonce_store` has `check_and_store(hotkey, nonce) -> bool` (and `retention` >= max_age + skew).
    """
    try:
        caller = http_auth.verify(headers, body, method=method, path=target, self_hotkey_ss58=self_hotkey,
                                  max_age=max_age, allowed_skew=allowed_skew, nonce_store=nonce_store)
    except http_auth.AuthError as e:
        reason = next((r for cls, r in _AUTH_REASONS if isinstance(e, cls)), "malformed")
        raise AuthFailure(reason, str(e)) from None
    except (ValueError, TypeError, UnicodeError, OverflowError) as e:  # odd header values: never a 500
        raise AuthFailure("malformed", f"unreadable auth headers ({type(e).__name__})") from None
    return VerifiedCaller(Hotkey(caller.hotkey_ss58), caller.nonce_ns)


# ---- the chain ----------------------------------------------------------------------------------------
def _one_line(e: BaseException | str) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= 300 else s[:297] + "..."


_RETRY_RE = re.compile(r"retry in ~?(\d+) blocks?", re.I)


class BittensorChain:
    """`Chain` over `bt.Subtensor` (blocking mode: the SDK runs its own loop on a daemon thread)."""

    def __init__(self, network: str, wallet: LoadedWallet | None = None, *, substrate: Any = None,
                 register_hint: str | None = None):
        try:
            self._sub = bt.Subtensor(network, substrate=substrate)
        except ValueError as e:  # unknown network name
            raise ConfigError(_one_line(e), hint="Use --network finney, test, local, ws://host:port or sim.") from e
        self.network = self._sub.network
        self.endpoint = self._sub.endpoint
        self.wallet = wallet
        self._register_hint = register_hint
        self._block_time: float | None = None
        self._lock = threading.RLock()  # one call at a time: the SDK's first connect is not thread-safe

    def __repr__(self) -> str:
        return f"BittensorChain({self.network!r}, {self.endpoint!r})"

    # ---- error translation -------------------------------------------------------------------------
    def _hint_register(self, netuid: int | None) -> str:
        if self._register_hint:
            return self._register_hint
        w = self.wallet
        name, hk = (w.name, w.hotkey_name) if w else ("NAME", "HOTKEY")
        net = "" if self.network == "finney" else f" --network {self.network}"
        return f"Register with `btcli subnets register --netuid {netuid} --wallet {name} --wallet-hotkey {hk}{net}`."

    def _translate(self, e: BaseException, what: str, netuid: int | None = None) -> ChainError:
        if isinstance(e, ChainError):
            return e
        msg = _one_line(getattr(e, "message", None) or e)
        if isinstance(e, bt.ChainError):
            code = getattr(e, "code", None)
            if code == bt.ErrorCode.NOT_REGISTERED:
                hk = self.wallet.hotkey if self.wallet else "the hotkey"
                return NotRegisteredError(f"{what}: hotkey {hk} is not registered on netuid {netuid} ({msg})",
                                          hint=self._hint_register(netuid))
            if code == bt.ErrorCode.RATE_LIMITED:
                m = _RETRY_RE.search(msg)
                return RateLimitedError(f"{what}: rate limited by the chain ({msg})",
                                        hint="Wait for the rate-limit window to pass; it is retried later.",
                                        retry_in_blocks=int(m.group(1)) if m else None)
            return ChainError(f"{what} failed on {self.network}: {msg}", hint=_one_line(e.remediation))
        if isinstance(e, bt.PolicyError):
            return ChainError(f"{what} refused by the SDK policy: {msg}")
        if isinstance(e, (bt.RpcConnectionError, bt.ConnectionNotReady, OSError, TimeoutError)):
            where = self.endpoint if self.network == self.endpoint else f"the {self.network} chain at {self.endpoint}"
            return ChainUnavailableError(
                f"cannot reach {where} ({what}): {msg}",
                hint="Check the network connection, or pass --network ws://HOST:PORT for your own node.")
        if isinstance(e, bt.BittensorError):
            return ChainError(f"{what} failed on {self.network}: {msg}")
        return ChainError(f"{what} failed on {self.network}: {type(e).__name__}: {msg}")

    def _do(self, what: str, fn: Callable[..., T], *args: Any, netuid: int | None = None, **kwargs: Any) -> T:
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except Exception as e:
            raise self._translate(e, what, netuid) from e

    def _need_wallet(self) -> LoadedWallet:
        if self.wallet is None:
            raise ChainError("this chain connection has no wallet to sign with")
        return self.wallet

    # ---- reads ---------------------------------------------------------------------------------------
    def block(self) -> int:
        return int(self._do("reading the block number", lambda: self._sub.block))

    def block_time(self) -> float:
        if self._block_time is None:
            self._block_time = float(self._do("reading the block time", self._sub.block_time))
        return self._block_time

    def peers(self, netuid: int) -> list[Peer]:
        mg = self._do("reading the metagraph", self._sub.subnets.metagraph, netuid, commitments=False, netuid=netuid)
        if mg is None:
            raise ChainError(f"subnet {netuid} does not exist on {self.network}",
                             hint="Check --netuid (and --network).")
        return [Peer(uid=Uid(n.uid), hotkey=Hotkey(n.hotkey), coldkey=Coldkey(n.coldkey), endpoint=n.axon,
                     validator_permit=bool(n.validator_permit), stake=n.total_stake.rao / 1e9,
                     last_update=int(n.last_update), active=bool(n.active)) for n in mg.neurons]

    def uid_of(self, netuid: int, hotkey: str) -> Uid | None:
        raw = self._do("reading the uid", self._sub.query, bt.storage.SubtensorModule.Uids, [netuid, hotkey],
                       netuid=netuid)
        return None if raw is None else Uid(int(raw))

    def weights_rate_limit(self, netuid: int) -> int:
        raw = self._do("reading the weights rate limit", self._sub.query,
                       bt.storage.SubtensorModule.WeightsSetRateLimit, [netuid], netuid=netuid)
        return int(raw or 0)

    def last_update(self, netuid: int, uid: int) -> int:
        raw = self._do("reading last_update", self._sub.query, bt.storage.SubtensorModule.LastUpdate, [netuid],
                       netuid=netuid)
        if isinstance(raw, (list, tuple)) and 0 <= uid < len(raw):
            return int(raw[uid] or 0)
        return 0

    def tempo(self, netuid: int) -> int:
        raw = self._do("reading the tempo", self._sub.query, bt.storage.SubtensorModule.Tempo, [netuid],
                       netuid=netuid)
        return int(raw or 0)

    # ---- writes --------------------------------------------------------------------------------------
    def publish_endpoint(self, netuid: int, ip: str, port: int) -> None:
        w = self._need_wallet()
        try:
            ipaddress.ip_address(ip)
        except ValueError as e:
            raise ConfigError(f"'{ip}' is not an IP address", hint="Pass --external-ip with a public IP.") from e
        intent = bt.ServeAxon(netuid=netuid, ip=ip, port=int(port), protocol=4)
        result = self._do("publishing the endpoint", self._sub.execute, intent, w.wallet, netuid=netuid)
        self._do("publishing the endpoint", result.raise_for_failure, netuid=netuid)
        log.info("published %s:%d for %s on netuid %d (%s)", ip, port, w.hotkey, netuid, self.network)

    def set_weights(self, netuid: int, weights: Mapping[int, float], *, version_key: int = 0) -> WeightsResult:
        w = self._need_wallet()
        pairs = {int(u): float(v) for u, v in weights.items()}
        if not pairs or not any(v > 0 for v in pairs.values()):
            raise ChainError("all weights are zero; nothing to set")
        intent = bt.SetWeights(netuid=netuid, weights=pairs, version_key=version_key)
        result = self._do("setting weights", self._sub.execute, intent, w.wallet, netuid=netuid)
        self._do("setting weights", result.raise_for_failure, netuid=netuid)
        data = dict(getattr(result, "data", {}) or {})
        block = self.block()
        uids = tuple(sorted(pairs))
        return WeightsResult(block=block, uids=uids, weights=tuple(pairs[u] for u in uids),
                             commit_reveal="reveal_round" in data, message=_one_line(result.message or "ok"))

    def close(self) -> None:
        try:
            self._sub.close()
        except Exception:  # closing must never fail a shutdown
            log.debug("closing the subtensor client failed", exc_info=True)
