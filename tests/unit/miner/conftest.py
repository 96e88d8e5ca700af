"""Miner test harness: a simulated subnet, real wallets (SDK keys in tmp dirs), the fake engine, the real app.

`Harness` runs one event loop and drives the app in process (httpx.ASGITransport) or on a real loopback
port (uvicorn in a thread). Requests are signed with the validator's real keys (btauth/1). With `workers=True`
the app under test is a worker's (`asn mine --workers N`): its service, rate limits and metrics live in a hub
over a real Unix socket, in the same event loop; `ctx` stays the hub's (the main process's) context.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from audiosubnet.chain.bittensor import create_wallet, sign_request
from audiosubnet.chain.sim import SimChain
from audiosubnet.config import load_settings
from audiosubnet.engines.registry import EngineCache
from audiosubnet.miner.server import build_miner, isolated_cache
from audiosubnet.miner.workers import Hub, HubLink, WorkerSpec, hub_path, worker_context

NETUID = 16
MIN_STAKE = 100.0


class Keys:
    """Wallets for every role: miner, validator, low-stake validator, a registered non-validator, a stranger."""

    def __init__(self, path: Path):
        self.path = path
        self.miner = create_wallet("miner", "default", path)
        self.validator = create_wallet("val", "default", path)
        self.poor = create_wallet("poor", "default", path)
        self.plain = create_wallet("plain", "default", path)
        self.stranger = create_wallet("stranger", "default", path)
        self.friend = create_wallet("friend", "default", path)  # unregistered, on the allow list
        self.enemy = create_wallet("enemy", "default", path)  # a validator on the deny list


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("wallets"))


def make_sim(path: Path, keys: Keys) -> SimChain:
    chain = SimChain(path, create=True)
    chain.create_subnet(NETUID, weights_rate_limit=0)
    chain.register(NETUID, keys.miner.hotkey, keys.miner.coldkey)
    chain.register(NETUID, keys.validator.hotkey, keys.validator.coldkey, stake=1000, validator_permit=True)
    chain.register(NETUID, keys.poor.hotkey, keys.poor.coldkey, stake=5, validator_permit=True)
    chain.register(NETUID, keys.plain.hotkey, keys.plain.coldkey, stake=5000)
    chain.register(NETUID, keys.enemy.hotkey, keys.enemy.coldkey, stake=5000, validator_permit=True)
    return chain


def miner_settings(home: Path, keys: Keys, model: str = "fake:default", devices: str | None = None, **mine):
    flags = {"subnet.network": "sim", "subnet.netuid": NETUID, "subnet.sim_path": home / "sim.db",
             "subnet.wallet_name": "miner", "subnet.wallet_path": keys.path, "model": model, "device": "cpu",
             "dtype": "float32", "mine.min_validator_stake": MIN_STAKE, "mine.rate_limit_per_min": 0,
             "mine.allow_hotkeys": [keys.friend.hotkey], "mine.deny_hotkeys": [keys.enemy.hotkey],
             "mine.max_wait_ms": 2.0, "devices": devices}
    flags.update({f"mine.{k}": v for k, v in mine.items()})
    return load_settings(home=home, **flags)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Harness:
    """One miner app + one event loop; `send()` signs and posts; `serve()` puts it on a loopback port."""

    def __init__(self, home: Path, keys: Keys, model: str = "fake:default", *, loopback: bool = False,
                 workers: bool = False, isolate: bool = False, devices: str | None = None, **mine):
        self.keys = keys
        self.chain = make_sim(home / "sim.db", keys)
        self.settings = miner_settings(home, keys, model, devices, **mine)
        if isolate or devices:  # the engine in its own supervised process(es), as `asn mine` runs it
            self.cache = isolated_cache(self.settings)
        else:
            self.cache = EngineCache(budget_bytes=None, device="cpu", dtype="float32")
        self.miner = build_miner(self.settings, wallet=keys.miner, chain=self.chain, cache=self.cache)
        self.ctx = self.miner.context
        self.ctx.run_policy_refresh = False
        self.app = self.miner.app
        self.loop = asyncio.new_event_loop()
        self._server = None
        self._thread = None
        self.hub = None
        self.links: list = []
        if workers:
            self.loop.run_until_complete(self.ctx.service.start())
            self.hub = Hub(self.ctx, hub_path())
            self.run(self.hub.start())
            self.app = self.worker_app()
            self.endpoint = self.base = "http://miner"
            self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base)
        elif loopback:  # uvicorn's own loop (in a thread) runs the app and its service, as in `asn mine`
            self.endpoint = self._serve()
            self.base = f"http://{self.endpoint}"
            self.http = httpx.AsyncClient(base_url=self.base, trust_env=False)
        else:
            self.endpoint = self.base = "http://miner"
            self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base)
            self.loop.run_until_complete(self.ctx.service.start())

    def worker_app(self):
        """One more worker's app (its own connection to the hub), started as uvicorn's lifespan would."""
        from audiosubnet.miner.app import create_app

        link = HubLink(self.hub.path)
        self.links.append(link)
        self.run(link.connect())
        ctx = worker_context(WorkerSpec.of(self.ctx, self.hub.path), link, self.run(link.call("peers")))
        self.run(ctx.service.start())
        return create_app(ctx)

    @property
    def hotkey(self) -> str:
        return self.keys.miner.hotkey

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    # ---- requests -------------------------------------------------------------------------------------
    def signed(self, body: bytes, *, signer=None, target: str = "/v1/tts", receiver: str | None = None,
               method: str = "POST", nonce_ns: int | None = None) -> dict[str, str]:
        return sign_request(signer or self.keys.validator, method, target, body, receiver or self.hotkey,
                            nonce_ns=nonce_ns)

    async def apost(self, target: str, body: bytes, headers: dict[str, str], content_type="application/json"):
        h = {"content-type": content_type, **headers} if content_type else dict(headers)
        return await self.http.post(target, content=body, headers=h)

    def post(self, target: str, body: bytes, headers: dict[str, str], content_type="application/json"):
        return self.run(self.apost(target, body, headers, content_type))

    def tts(self, payload: dict | bytes, *, signer=None, target: str = "/v1/tts", **kw):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.post(target, body, self.signed(body, signer=signer, target=target, **kw))

    # ---- a real port ----------------------------------------------------------------------------------
    def transport(self):
        return None if self._server is not None else httpx.ASGITransport(app=self.app)

    def _serve(self) -> str:
        """Serve the app on 127.0.0.1:<free port> (uvicorn in a thread); returns the endpoint."""
        import uvicorn

        port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"127.0.0.1:{port}"

    def close(self) -> None:
        self.run(self.http.aclose())
        for link in self.links:
            self.run(link.close())
        if self.hub is not None:
            self.run(self.hub.close())
            shutil.rmtree(self.hub.path.parent, ignore_errors=True)
        if self._server is not None:
            self._server.should_exit = True  # lifespan shutdown drains and stops the service
            self._thread.join(timeout=10)
        else:
            self.run(self.ctx.service.stop(timeout=5))
        self.loop.close()
        if hasattr(self.cache, "close"):
            self.cache.close()
        self.ctx.nonce_store.close()
        self.chain.close()


@pytest.fixture
def harness_factory(tmp_path, keys):
    made: list[Harness] = []

    def make(model: str = "fake:default", *, loopback: bool = False, workers: bool = False, isolate: bool = False,
             devices: str | None = None, **mine) -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", keys, model, loopback=loopback, workers=workers, isolate=isolate,
                    devices=devices, **mine)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture(scope="module")
def module_harness(tmp_path_factory, keys, request):
    """One harness per test module, configured by the module's HARNESS dict (model=..., mine settings...)."""
    params = dict(getattr(request.module, "HARNESS", {}))
    h = Harness(tmp_path_factory.mktemp("harness"), keys, **params)
    yield h
    h.close()
