from __future__ import annotations

import numpy as np
import pytest

from audiosubnet.engines import registry
from audiosubnet.engines.base import Capabilities, SpeechEngine
from audiosubnet.errors import UnknownModelError


def test_builtins_come_from_entry_points():
    from importlib.metadata import entry_points

    eps = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"piper", "espeak", "speecht5", "mms", "bark", "fake"} <= eps
    assert eps <= set(registry.engine_names())


@pytest.mark.parametrize("mid,expected", [
    ("piper:en_US-joe-medium", ("piper", "en_US-joe-medium")),
    ("piper", ("piper", "en_US-joe-medium")),
    ("espeak:en-gb", ("espeak", "en-gb")),
    ("ESPEAK:en-us", ("espeak", "en-us")),
    ("fake:delay_ms=5", ("fake", "delay_ms=5")),
])
def test_parse_model_id(mid, expected):
    assert registry.parse_model_id(mid) == expected


def test_auto_is_the_offline_default():
    assert registry.default_model_id() == "piper:en_US-joe-medium"
    assert registry.canonical_id("auto") == "piper:en_US-joe-medium"


@pytest.mark.parametrize("bad", ["", "nope:thing", "justaword", "hf:unknown-org/unknown-model"])
def test_unknown_models_are_usage_errors_with_a_hint(bad):
    with pytest.raises(UnknownModelError) as e:
        registry.parse_model_id(bad)
    assert e.value.hint and e.value.exit_code == 2


def test_third_party_engine_registers_through_the_same_path():
    class Echo(SpeechEngine):
        name = "echo-test"
        default_model = "one"

        @property
        def capabilities(self):
            return Capabilities(sample_rate=8000)

        def setup(self, device="cpu", dtype="float32"):
            self.loaded = True

        def _synthesize(self, requests):
            return []

    registry.register(Echo)
    try:
        assert "echo-test" in registry.engine_names()
        e = registry.create("echo-test")
        assert isinstance(e, Echo) and e.model_id == "echo-test:one"
    finally:
        registry.unregister("echo-test")
    assert "echo-test" not in registry.engine_names()


def test_engine_lease_by_model_id_uses_registry_and_canonical_key():
    cache = registry.EngineCache(budget_bytes=None)
    with cache.engine("fake") as e1:
        assert e1.model_id == "fake:default" and e1.loaded
    with cache.engine("fake:default") as e2:
        assert e2 is e1
    assert cache.is_loaded("fake:default")
    cache.clear()
    assert not e1.loaded and cache.loaded() == []


def test_an_engine_that_leases_others_is_given_the_cache_it_is_leased_from():
    from audiosubnet.audio import Audio
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.world import load_pyworld
    from audiosubnet.errors import DependencyError, EngineError

    try:
        load_pyworld()  # also where pyworld's own __init__ cannot import (no pkg_resources)
    except DependencyError:
        pytest.skip("pyworld is not installed")

    cache = registry.EngineCache(budget_bytes=None)
    other = registry.EngineCache(budget_bytes=None)
    with cache.engine("world:fake:default") as world:
        assert world.cache is cache
        ref = Audio((0.3 * np.sin(np.arange(22050) * 2 * np.pi * 140 / 22050)).astype(np.float32), 22050)
        world.synthesize([SynthesisRequest("Hello there.", reference=ref)])
        assert cache.is_loaded("fake:default") and not other.is_loaded("fake:default")  # its base voice
    cache.clear()
    loose = registry.create("world:fake:default")  # not from a cache: nothing to lease the base voice from
    with pytest.raises(EngineError, match="ModelCache"):
        loose.setup()
