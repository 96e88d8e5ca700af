"""Fake miners for validator tests: behaviours behind one httpx transport that checks every signature."""

from __future__ import annotations

import types

import httpx
import pytest

from audiosubnet.chain.bittensor import create_wallet, verify_request
from audiosubnet.chain.sim import SimChain
from audiosubnet.miner.nonces import SqliteNonceStore
from audiosubnet.protocol import PATH_SEEN, AudioMeta

NETUID = 16


def respond(data: bytes, *, sr: int = 22050, duration: float = 3.0, ctype: str = "audio/wav", stream=None):
    headers = {"content-type": ctype, **AudioMeta("fake", sr, duration, 1.0).headers()}
    if stream is not None:
        return httpx.Response(200, headers=headers, stream=stream)
    return httpx.Response(200, headers=headers, content=data)


class AsyncChunks(httpx.AsyncByteStream):
    def __init__(self, gen):
        self.gen = gen

    async def __aiter__(self):
        async for chunk in self.gen():
            yield chunk


class FakeMiners(httpx.AsyncBaseTransport):
    """Routes each request to the behaviour registered for its host:port; records every call."""

    def __init__(self, behaviours):
        self.behaviours = behaviours
        self.calls: list[str] = []

    async def handle_async_request(self, request):
        name = self.by_port[request.url.port]
        self.calls.append(name)
        body = await request.aread()
        # every query is signed for this miner's hotkey (raises AuthFailure otherwise)
        verify_request(request.headers, body, request.method, request.url.raw_path.decode(),
                       self.hotkeys[request.url.port], nonce_store=self.nonces)
        if request.url.path == PATH_SEEN and f"{name}:seen" not in self.behaviours:  # no seen log
            return httpx.Response(404, json={"code": "not_found", "message": "no such route"})
        return await self.behaviours[f"{name}:seen" if request.url.path == PATH_SEEN else name](request)


def make_world(tmp_path, behaviours):
    """A simulated subnet with one validator and a miner per behaviour; a clock moved by hand (`now`)."""
    now = [1_000_000.0]
    chain_path = tmp_path / "sim.db"
    chain = SimChain(chain_path, create=True, clock=lambda: now[0])
    chain.create_subnet(NETUID, weights_rate_limit=5)
    val = create_wallet("val", "default", tmp_path / "w")
    chain.register(NETUID, val.hotkey, stake=1000, validator_permit=True)
    transport = FakeMiners(behaviours)
    transport.by_port, transport.hotkeys, transport.nonces = {}, {}, SqliteNonceStore(tmp_path / "nonces.db")
    uids = {}
    for i, name in enumerate(n for n in behaviours if not n.endswith(":seen")):
        w = create_wallet(f"m{i}", "default", tmp_path / "w")
        uids[name] = int(chain.register(NETUID, w.hotkey))
        SimChain(chain_path, hotkey=w.hotkey, clock=lambda: now[0]).publish_endpoint(NETUID, "10.9.8.7", 9000 + i)
        transport.by_port[9000 + i] = name
        transport.hotkeys[9000 + i] = w.hotkey
    now[0] += 12 * 10  # start at block 10 (block 0 reads as "never" in last_update)
    return dict(chain=chain, wallet=val, transport=transport, uids=uids, now=now, path=chain_path)


@pytest.fixture(scope="session")
def kit():
    """The helpers above, for test modules (conftest modules are not importable by name)."""
    return types.SimpleNamespace(respond=respond, AsyncChunks=AsyncChunks, make_world=make_world, NETUID=NETUID)
