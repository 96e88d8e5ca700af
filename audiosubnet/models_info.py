"""What `asn models list` shows: every engine's catalog with local status. No weights are loaded."""

from __future__ import annotations

from typing import Any

from audiosubnet.engines import registry
from audiosubnet.errors import AsnError
from audiosubnet.runtime.cache import ModelCache


def list_models(cache: ModelCache | None = None) -> list[dict[str, Any]]:
    """One row per catalog model; `loaded` says whether `cache` holds it (False without a cache)."""
    rows: list[dict[str, Any]] = []
    for name in registry.listed_engine_names():  # test-only engines (fake) are usable but not listed
        try:
            cls = registry.get_engine_class(name)
        except AsnError as e:
            rows.append(dict(model=f"{name}:*", engine=name, downloaded=False, size_bytes=None, loaded=False,
                             source="", license="", notes=f"unavailable: {e.hint or e}"))
            continue
        for model in cls.catalog():
            try:
                st = cls.status(model)
            except Exception as e:  # a broken catalog entry must not hide the others
                rows.append(dict(model=f"{name}:{model}", engine=name, downloaded=False, size_bytes=None,
                                 loaded=False, source="", license="", notes=f"error: {e}"))
                continue
            rows.append(dict(model=st.model_id, engine=name, downloaded=st.downloaded, size_bytes=st.size_bytes,
                             loaded=cache is not None and cache.is_loaded(st.model_id), source=st.source,
                             license=st.license, notes=st.notes))
    return rows
