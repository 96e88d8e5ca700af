"""Subsystem configs are views of their settings section: one source of defaults, built with config.view."""

from __future__ import annotations

import dataclasses

import pytest

from audiosubnet import config
from audiosubnet.jobs.clone_watch import WatchOptions
from audiosubnet.jobs.tts_batch import BatchOptions
from audiosubnet.miner.app import MinerContext
from audiosubnet.miner.policy import PolicyConfig
from audiosubnet.service.batching import ServiceConfig
from audiosubnet.validator.loop import LoopConfig

RENAMED = {"fmt": "format", "require_permit": "require_validator_permit", "refresh_s": "metagraph_refresh_s",
           "max_age_s": "metagraph_max_age_s", "allow": "allow_hotkeys", "deny": "deny_hotkeys"}
VIEWS = [(ServiceConfig, config.MineSettings), (PolicyConfig, config.MineSettings), (MinerContext, config.MineSettings),
         (LoopConfig, config.ValidateSettings), (WatchOptions, config.CloneSettings), (BatchOptions, config.TtsSettings)]


@pytest.mark.parametrize(("cls", "section"), VIEWS, ids=lambda v: v.__name__)
def test_every_default_a_view_shares_with_its_section_is_the_sections(cls, section):
    defaults = config.defaults(section)
    shared = 0
    for f in dataclasses.fields(cls):
        name = RENAMED.get(f.name, f.name)
        if name not in defaults or f.default is dataclasses.MISSING:
            continue
        if cls is ServiceConfig and name not in ServiceConfig.FROM_SECTION:
            continue  # mine.keep_alive_s is the HTTP keep-alive, not the service's idle unload
        want = defaults[name]
        got = f.default
        if isinstance(got, (frozenset, tuple)):
            got, want = sorted(got), sorted(want)
        assert got == want, f"{cls.__name__}.{f.name} = {f.default!r}, the settings say {defaults[name]!r}"
        shared += 1
    assert shared >= 3


def test_the_clone_watchers_default_model_is_the_settings_auto():
    assert WatchOptions().model == config.CloneSettings().model == "auto"


def test_the_watcher_resolves_auto_to_a_clone_model(tmp_path):
    from audiosubnet.engines.registry import EngineCache
    from audiosubnet.jobs.clone_watch import CloneWatcher

    opts = WatchOptions(source=tmp_path / "s", target=tmp_path / "t", processed=tmp_path / "p", failed=tmp_path / "f")
    w = CloneWatcher(opts, EngineCache(budget_bytes=None, device="cpu", dtype="float32"))
    assert w.opts.model == "world"  # no pocket weights offline: the WORLD fallback, as `asn clone watch` picks


def test_views_are_built_from_loaded_settings():
    s = config.load_settings(**{"mine.max_batch": 7, "mine.rate_limit_per_min": 30, "clone.format": "flac",
                                "validator.alpha": 0.5, "validator.deny_hotkeys": ["x"]})
    svc = ServiceConfig.of(s.mine, models=("fake:default",))
    assert (svc.max_batch, svc.models, svc.max_wait_ms) == (7, ("fake:default",), s.mine.max_wait_ms)
    assert svc.keep_alive_s is None  # not the section's HTTP keep-alive
    pol = PolicyConfig.of(s.mine, 16, 0.0)
    assert pol.rate_limit_per_min == 30 and pol.max_age_s == s.mine.metagraph_max_age_s
    assert WatchOptions.of(s.clone, model="world").fmt == "flac"
    from audiosubnet.validator.app import loop_config

    loop = loop_config(s)
    assert (loop.alpha, loop.deny_hotkeys, loop.netuid) == (0.5, ("x",), s.subnet.netuid)
