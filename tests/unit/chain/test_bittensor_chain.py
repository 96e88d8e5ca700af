"""BittensorChain over the real bittensor SDK (bt.Subtensor, intents, executor) with an in-memory Substrate."""

from __future__ import annotations

import ipaddress

import pytest

from audiosubnet.chain.base import Chain, ChainUnavailableError, RateLimitedError, blocks_until_weights_allowed
from audiosubnet.chain.bittensor import BittensorChain, create_wallet, load_wallet
from audiosubnet.errors import ChainError, ConfigError, NotRegisteredError, WalletError

NETUID = 16


@pytest.fixture(scope="module")
def wallets(tmp_path_factory):
    path = tmp_path_factory.mktemp("wallets")
    return {name: create_wallet(name, "default", path) for name in ("val", "miner", "other")}


def _subnet(fake, wallets, **kw) -> None:
    fake.add_subnet(NETUID, [
        {"hotkey": wallets["val"].hotkey, "coldkey": wallets["val"].coldkey, "stake_rao": 5_000 * 10**9,
         "permit": True},
        {"hotkey": wallets["miner"].hotkey, "coldkey": wallets["miner"].coldkey, "stake_rao": 10**9,
         "axon": ("203.0.113.7", 8091)},
    ], **kw)


def _chain(fake, wallet=None) -> BittensorChain:
    return BittensorChain("test", wallet=wallet, substrate=fake)


def test_metagraph_reads(wallets, fake_substrate):
    fake = fake_substrate(block=1234)
    _subnet(fake, wallets, tempo=99, rate_limit=50, last_update=[1200, 0])
    chain = _chain(fake)
    assert isinstance(chain, Chain)
    assert chain.block() == 1234
    assert chain.block_time() == 12.0
    peers = chain.peers(NETUID)
    assert [p.uid for p in peers] == [0, 1]
    val, miner = peers
    assert val.hotkey == wallets["val"].hotkey and val.coldkey == wallets["val"].coldkey
    assert val.validator_permit and val.stake == pytest.approx(5000.0) and val.endpoint is None
    assert not miner.validator_permit and miner.endpoint == "203.0.113.7:8091"
    assert miner.url == "http://203.0.113.7:8091"
    assert chain.uid_of(NETUID, wallets["miner"].hotkey) == 1
    assert chain.uid_of(NETUID, wallets["other"].hotkey) is None
    assert chain.tempo(NETUID) == 99
    assert chain.weights_rate_limit(NETUID) == 50
    assert chain.last_update(NETUID, 0) == 1200 and chain.last_update(NETUID, 7) == 0
    assert blocks_until_weights_allowed(chain, NETUID, 0) == 50 - (1234 - 1200)


def test_missing_subnet_is_a_clear_error(wallets, fake_substrate):
    chain = _chain(fake_substrate())
    with pytest.raises(ChainError, match="subnet 16 does not exist on test"):
        chain.peers(NETUID)


def test_serve_axon_publishes_the_endpoint(wallets, fake_substrate):
    fake = fake_substrate()
    _subnet(fake, wallets)
    chain = _chain(fake, wallets["miner"])
    chain.publish_endpoint(NETUID, "198.51.100.4", 9001)
    (sub,) = fake.submitted
    assert (sub.call.module, sub.call.function) == ("SubtensorModule", "serve_axon")
    p = sub.call.params
    assert p["netuid"] == NETUID and p["port"] == 9001 and p["ip_type"] == 4
    assert p["ip"] == int(ipaddress.ip_address("198.51.100.4"))
    assert sub.signer == wallets["miner"].hotkey  # hotkey-signed


def test_serve_axon_errors_become_one_line_messages(wallets, fake_substrate):
    fake = fake_substrate()
    _subnet(fake, wallets)
    chain = _chain(fake, wallets["miner"])
    fake.fail_next.append(("Attempting to set prometheus information withing the rate limit min.",
                           "ServingRateLimitExceeded"))
    with pytest.raises(RateLimitedError) as e:
        chain.publish_endpoint(NETUID, "198.51.100.4", 9001)
    assert "rate limited" in str(e.value) and "\n" not in str(e.value)
    fake.fail_next.append(("The hotkey is not registered in subnet", "HotKeyNotRegisteredInSubNet"))
    with pytest.raises(NotRegisteredError) as e:
        chain.publish_endpoint(NETUID, "198.51.100.4", 9001)
    assert "not registered on netuid 16" in str(e.value)
    assert "btcli subnets register --netuid 16 --wallet miner --wallet-hotkey default --network test" in e.value.hint
    with pytest.raises(ConfigError):
        chain.publish_endpoint(NETUID, "not-an-ip", 9001)


def test_set_weights_plain_path(wallets, fake_substrate):
    fake = fake_substrate()
    _subnet(fake, wallets)
    chain = _chain(fake, wallets["val"])
    res = chain.set_weights(NETUID, {0: 0.25, 1: 0.75})
    (sub,) = fake.submitted
    assert (sub.call.module, sub.call.function) == ("SubtensorModule", "set_mechanism_weights")
    assert sub.call.params["dests"] == [0, 1]
    assert sub.call.params["weights"] == [21845, 65535]  # max-upscaled u16
    assert sub.signer == wallets["val"].hotkey
    assert not res.commit_reveal and res.uids == (0, 1)


def test_set_weights_commit_reveal_path(wallets, fake_substrate):
    fake = fake_substrate()
    _subnet(fake, wallets, commit_reveal=True)
    chain = _chain(fake, wallets["val"])
    res = chain.set_weights(NETUID, {1: 1.0})
    (sub,) = fake.submitted
    assert (sub.call.module, sub.call.function) == ("SubtensorModule", "commit_timelocked_mechanism_weights")
    assert sub.call.params["netuid"] == NETUID and sub.call.params["reveal_round"] > 0
    assert isinstance(sub.call.params["commit"], bytes | bytearray) and len(sub.call.params["commit"]) > 32
    assert res.commit_reveal


def test_set_weights_unregistered_and_rate_limited(wallets, fake_substrate):
    fake = fake_substrate(block=1000)
    _subnet(fake, wallets, rate_limit=100, last_update=[990, 0])
    with pytest.raises(NotRegisteredError) as e:  # caught by the SDK's preflight, nothing submitted
        _chain(fake, wallets["other"]).set_weights(NETUID, {1: 1.0})
    assert "not registered on netuid 16" in str(e.value) and e.value.exit_code == 2
    with pytest.raises(RateLimitedError) as r:
        _chain(fake, wallets["val"]).set_weights(NETUID, {1: 1.0})
    assert r.value.retry_in_blocks == 90 and "\n" not in str(r.value)
    fake.block = 1100  # window passed; now the chain itself refuses
    fake.fail_next.append(("Setting weights too fast", "SettingWeightsTooFast"))
    with pytest.raises(RateLimitedError):
        _chain(fake, wallets["val"]).set_weights(NETUID, {1: 1.0})
    assert fake.submitted and fake.submitted[-1].call.function == "set_mechanism_weights"
    with pytest.raises(ChainError, match="zero"):
        _chain(fake, wallets["val"]).set_weights(NETUID, {1: 0.0})


def test_unreachable_node_and_bad_network(wallets, fake_substrate):
    from bittensor import RpcConnectionError

    fake = fake_substrate(connect_error=RpcConnectionError("connection refused"))
    with pytest.raises(ChainUnavailableError, match="cannot reach the test chain"):
        _chain(fake).block()
    with pytest.raises(ConfigError, match="Unknown network"):
        BittensorChain("nonsense")


def test_wallet_loading(tmp_path, wallets):
    w = wallets["val"]
    again = load_wallet("val", "default", w.path)
    assert again.hotkey == w.hotkey and again.coldkey == w.coldkey
    with pytest.raises(WalletError) as e:
        load_wallet("nope", "hk", tmp_path)
    assert "btcli wallet new-hotkey --wallet nope --wallet-hotkey hk" in e.value.hint


def test_only_one_module_imports_bittensor():
    import re
    from pathlib import Path

    import audiosubnet

    root = Path(audiosubnet.__file__).parent
    pattern = re.compile(r"^\s*(import bittensor|from bittensor[\s.])", re.M)
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if pattern.search(p.read_text()))
    assert importers == ["chain/bittensor.py"]
