"""An in-memory implementation of bittensor 11's `Substrate` protocol, for `bt.Subtensor(network, substrate=...)`.

It scripts storage, runtime-API answers and submit outcomes, and records every composed call and extrinsic.
No network, no node: the SDK's real intents, executor, metagraph decoding and error mapping run on top.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import bittensor as bt
import pytest

GENESIS_HASH = "0x" + "00" * 32


@dataclass
class Composed:
    module: str
    function: str
    params: dict

    @property
    def call_module(self) -> str:
        return self.module

    @property
    def call_function(self) -> str:
        return self.function


@dataclass
class Submitted:
    call: Composed
    signer: str
    nonce: int | None
    period: int | None


@dataclass
class FakeSubstrate:
    """Scripted chain state. `storage[(module, item, tuple(params))] = value`; `runtime[(api, method)] = fn(params)`."""

    block: int = 1000
    block_seconds: float = 12.0
    storage: dict[tuple, Any] = field(default_factory=dict)
    maps: dict[tuple, list] = field(default_factory=dict)
    runtime: dict[tuple, Any] = field(default_factory=dict)
    constants: dict[tuple, Any] = field(default_factory=dict)
    # outcome of the next submits: None = success, else (message, error name) for a failed extrinsic
    fail_next: list[tuple[str, str | None]] = field(default_factory=list)
    connect_error: Exception | None = None
    token_symbols: dict[int, str] = field(default_factory=dict)
    composed: list[Composed] = field(default_factory=list)
    submitted: list[Submitted] = field(default_factory=list)
    reads: list[tuple] = field(default_factory=list)

    # ---- metadata / lifecycle -------------------------------------------------------------------------
    def balance(self, rao: int, netuid: int = 0) -> bt.Balance:
        return bt.Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        if self.connect_error is not None:
            raise self.connect_error

    async def close(self) -> None:
        return None

    # ---- reads ----------------------------------------------------------------------------------------
    async def block_hash(self, block: int | None = None) -> str:
        return "0x%064x" % (self.block if block is None else block)

    async def block_number(self) -> int:
        return self.block

    async def finalized_block_number(self) -> int:
        return self.block - 2

    async def block_time(self) -> float:
        return self.block_seconds

    async def spec_version(self) -> int:
        return 400

    async def get_block(self, block_number=None, block_hash=None):
        return {"header": {"number": self.block if block_number is None else block_number}, "extrinsics": []}

    async def query(self, module, storage_function, params=None, block_hash=None):
        key = (module, storage_function, tuple(params or []))
        self.reads.append(key)
        return self.storage.get(key)

    async def map_has_entries(self, module, storage_function, params, block_hash=None) -> bool:
        return bool(self.maps.get((module, storage_function, tuple(params or []))))

    async def query_map(self, module, storage_function, params=None, block_hash=None):
        return list(self.maps.get((module, storage_function, tuple(params or [])), []))

    async def query_batch(self, module, storage_function, param_sets, block_hash=None):
        return [await self.query(module, storage_function, p, block_hash) for p in param_sets]

    async def runtime_call(self, api, method, params, block_hash=None):
        fn = self.runtime.get((api, method))
        if fn is None:
            return None
        return fn(params) if callable(fn) else fn

    async def constant(self, module, name):
        return self.constants.get((module, name))

    async def decode_scale(self, type_string, data):
        return data

    async def blocks(self, *, finalized: bool = False):
        yield {"header": {"number": self.block}}

    async def events(self, block_hash=None):
        return []

    # ---- calls ----------------------------------------------------------------------------------------
    async def compose(self, call) -> Composed:
        module, function, params = call
        c = Composed(module, function, dict(params))
        self.composed.append(c)
        return c

    async def estimate_fee(self, call, keypair) -> bt.Balance:
        return bt.Balance(0)

    async def estimate_weight(self, call, keypair) -> dict:
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        return 0

    async def mev_next_key(self):
        return None

    async def sign_extrinsic(self, call, keypair, *, nonce, period):
        return b"", "0x" + "11" * 32

    async def find_extrinsic(self, extrinsic_hash, block_hash):
        return None

    async def submit(self, call, keypair, *, nonce=None, period=None, wait_for_inclusion=True,
                     wait_for_finalization=True) -> bt.ExtrinsicResult:
        self.submitted.append(Submitted(call, keypair.ss58_address, nonce, period))
        if self.fail_next:
            message, name = self.fail_next.pop(0)
            return bt.ExtrinsicResult(success=False, message=message, error=bt.ChainError(message, name))
        self.block += 1
        return bt.ExtrinsicResult(success=True, message="Success", block_hash=await self.block_hash(),
                                  extrinsic_id=f"{self.block}-0001")

    async def submit_signed(self, extrinsic, keypair, **kw) -> bt.ExtrinsicResult:
        return await self.submit(extrinsic, keypair, **kw)

    # ---- scripting helpers ----------------------------------------------------------------------------
    def set_storage(self, item: tuple[str, str], params: list, value: Any) -> None:
        self.storage[(item[0], item[1], tuple(params))] = value

    def add_subnet(self, netuid: int, neurons: list[dict], *, tempo: int = 360, rate_limit: int = 100,
                   commit_reveal: bool = False, last_update: list[int] | None = None) -> None:
        """A subnet whose metagraph holds `neurons` (dicts: hotkey, coldkey, stake_rao, permit, axon=(ip, port))."""
        st = bt.storage.SubtensorModule
        for uid, n in enumerate(neurons):
            self.set_storage(st.Uids, [netuid, n["hotkey"]], uid)
        self.set_storage(st.Tempo, [netuid], tempo)
        self.set_storage(st.WeightsSetRateLimit, [netuid], rate_limit)
        self.set_storage(st.CommitRevealWeightsEnabled, [netuid], commit_reveal)
        self.set_storage(st.LastUpdate, [netuid], last_update or [0] * len(neurons))
        self.set_storage(st.MinAllowedWeights, [netuid], 1)
        self.set_storage(st.MaxWeightsLimit, [netuid], 65535)
        self.set_storage(st.SubnetEpochConsensus, [netuid], "Yuma")
        self.set_storage(st.ValidatorPermit, [netuid], [bool(n.get("permit")) for n in neurons])
        self.set_storage(st.RevealPeriodEpochs, [netuid], 1)
        self.set_storage(st.LastEpochBlock, [netuid], self.block - 10)
        self.set_storage(st.PendingEpochAt, [netuid], 0)
        self.set_storage(st.SubnetEpochIndex, [netuid], 5)
        self.set_storage(st.BlocksSinceLastStep, [netuid], 10)

        def metagraph(params):
            if params != [netuid]:
                return None
            axons = []
            for n in neurons:
                if n.get("axon"):
                    ip, port = n["axon"]
                    axons.append({"ip": int(ipaddress.ip_address(ip)), "port": port, "ip_type": 4})
                else:
                    axons.append({"ip": 0, "port": 0, "ip_type": 4})
            stake = [int(n.get("stake_rao", 0)) for n in neurons]
            return {
                "netuid": netuid, "name": list(b"audio"), "symbol": list(b"A"), "block": self.block,
                "tempo": tempo, "last_step": self.block - 10, "blocks_since_last_step": 10,
                "owner_hotkey": neurons[0]["hotkey"] if neurons else "", "owner_coldkey": "",
                "network_registered_at": 1, "num_uids": len(neurons), "max_uids": 256,
                "hotkeys": [n["hotkey"] for n in neurons], "coldkeys": [n["coldkey"] for n in neurons],
                "axons": axons, "active": [True] * len(neurons),
                "validator_permit": [bool(n.get("permit")) for n in neurons],
                "last_update": last_update or [0] * len(neurons),
                "block_at_registration": [1] * len(neurons),
                "alpha_stake": stake, "tao_stake": [0] * len(neurons), "total_stake": stake,
            }

        self.runtime[("SubnetInfoRuntimeApi", "get_metagraph")] = metagraph


@pytest.fixture
def fake_substrate():
    """A factory: fake_substrate(block=..., ...) -> FakeSubstrate."""
    return FakeSubstrate


@pytest.fixture(autouse=True)
def _token_cache(tmp_path, monkeypatch):
    # bt.Client.connect caches token symbols on disk: keep that out of the real home
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "symbols.json"))
