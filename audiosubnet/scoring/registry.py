"""The scorer registry: scorers register under the entry-point group `audiosubnet.scorers`, exactly as
speech engines do under `audiosubnet.engines` (pyproject.toml holds the built-ins):

    [project.entry-points."audiosubnet.scorers"]
    mymos = "my_package.mos:MyMosScorer"

A scorer id names one stage of the pipeline (`Scorer.role`): `asr` transcribes (WER/CER), `speaker` compares a
clone with its reference, and the MOS predictors are those listed in `score.mos_models` (`dnsmos`, `utmos`, or
any registered scorer whose role is "mos"). The pipeline asks each class for its `ScorerSpec`
(`Scorer.spec(plan, settings)`): the model it runs, where, and how to make it.
"""

from __future__ import annotations

from audiosubnet.errors import DependencyError, UsageError
from audiosubnet.runtime.plugins import PluginRegistry
from audiosubnet.scoring.base import Scorer

ENTRY_POINT_GROUP = "audiosubnet.scorers"

#: the ids of the stages every pipeline has (MOS predictors come from `score.mos_models`)
ASR, SPEAKER = "asr", "speaker"


def _unknown(name: str, known: list[str]) -> Exception:
    return UsageError(f"unknown scorer '{name}'", hint=f"Registered scorers: {', '.join(known)}.")


_registry: PluginRegistry[Scorer] = PluginRegistry(ENTRY_POINT_GROUP, "scorer", _unknown)


def register(cls: type[Scorer], name: str | None = None) -> type[Scorer]:
    """Register a scorer class at run time (tests, notebooks); usable as a decorator. A later one wins."""
    return _registry.register(cls, name)


def unregister(name: str) -> None:
    _registry.unregister(name)


def scorer_names(role: str | None = None) -> list[str]:
    """Registered scorer ids, sorted; with `role`, those of that role whose module imports."""
    names = _registry.names()
    if role is None:
        return names
    out = []
    for name in names:
        try:
            if get_scorer_class(name).role == role:
                out.append(name)
        except DependencyError:
            continue
    return out


def get_scorer_class(name: str) -> type[Scorer]:
    """The class registered as `name` (UsageError when none is; DependencyError when its module cannot
    import)."""
    return _registry.get(name)
