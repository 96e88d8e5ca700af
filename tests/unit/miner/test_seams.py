"""The miner's seams (miner/seams.py): both implementations of each protocol have every member of it."""

from __future__ import annotations

import pytest

from audiosubnet.miner import seams, workers
from audiosubnet.miner.metrics import MinerMetrics
from audiosubnet.miner.nonces import SqliteNonceStore
from audiosubnet.miner.policy import CallerPolicy, PolicyConfig
from audiosubnet.service.batching import ServiceConfig, TtsService


class NoChain:
    network = "test"

    def peers(self, netuid):
        return []


def conforms(obj, proto) -> bool:
    """Every member of `proto` is on `obj` (looked up without running properties: some raise before start)."""
    names = {n for n in vars(proto) if not n.startswith("_")} | set(getattr(proto, "__annotations__", {}))
    missing = [n for n in names if n not in getattr(obj, "__dict__", {}) and not hasattr(type(obj), n)]
    assert not missing, f"{type(obj).__name__} lacks {missing} of {proto.__name__}"
    return True


@pytest.fixture
def link(tmp_path):
    return workers.HubLink(tmp_path / "hub.sock")


def test_the_service_of_one_process_and_of_a_worker_are_both_services(link, cpu_cache):
    assert conforms(TtsService(ServiceConfig(models=("fake:default",)), cache=cpu_cache), seams.Service)
    assert conforms(workers.RemoteService(link), seams.Service)


def test_both_policies_are_policies_and_a_worker_policy_never_reads_the_chain(link):
    assert conforms(CallerPolicy(NoChain(), PolicyConfig()), seams.Policy)
    hub = workers.HubPolicy(link, PolicyConfig(), ([], 0.0))
    assert conforms(hub, seams.Policy)
    assert not isinstance(hub, CallerPolicy) and not hasattr(hub, "refresh") and not hasattr(hub, "chain")


def test_nonce_stores_and_metrics(tmp_path, link):
    store = SqliteNonceStore(tmp_path / "n.db")
    try:
        assert conforms(store, seams.NonceStore)
    finally:
        store.close()
    assert conforms(MinerMetrics(), seams.Metrics) and conforms(workers.RelayMetrics(link), seams.Metrics)
    with pytest.raises(AssertionError, match="lacks"):
        conforms(object(), seams.Metrics)
