"""PluginRegistry: entry points listed without importing them, loaded on first use, run-time registrations
winning, and the two errors a user can meet (an unknown name, a plugin whose module cannot import)."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from audiosubnet.errors import DependencyError, UsageError
from audiosubnet.runtime import plugins
from audiosubnet.runtime.loadable import Loadable


class Tone(Loadable):
    name = "tone"

    def setup(self, device="cpu", dtype="float32"):
        self.loaded = True


@pytest.fixture
def group(monkeypatch):
    eps = [EntryPoint("tone", f"{__name__}:Tone", "asn.test"),
           EntryPoint("broken", "asn_no_such_module_xyz:Thing", "asn.test")]
    seen = []

    def fake_entry_points(group):
        seen.append(group)
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    reg = plugins.PluginRegistry("asn.test", "widget",
                                 lambda name, known: UsageError(f"unknown widget '{name}'", hint=", ".join(known)))
    return reg, seen


def test_entry_points_load_on_first_use_and_registrations_win(group):
    reg, seen = group
    assert reg.names() == ["broken", "tone"] and seen == ["asn.test"]
    assert reg.get("tone") is Tone

    class Other(Tone):
        name = "tone"

    reg.register(Other)
    assert reg.get("tone") is Other
    reg.unregister("tone")
    assert reg.get("tone") is Tone  # the entry point again
    reg.register(Other, "other")
    assert reg.names() == ["broken", "other", "tone"]
    with pytest.raises(ValueError, match="has no name"):
        reg.register(type("Nameless", (), {}))


def test_unknown_and_unimportable_plugins_are_typed_errors(group):
    reg, _ = group
    with pytest.raises(UsageError, match="unknown widget 'nope'") as e:
        reg.get("nope")
    assert e.value.hint == "broken, tone"
    with pytest.raises(DependencyError, match="widget 'broken' needs the Python package 'asn_no_such_module_xyz'"):
        reg.get("broken")
