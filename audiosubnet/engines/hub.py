"""Hugging Face Hub files: resolve a repo or a local folder to a local path, pull, remove.

Loading code never hands a repo id to `from_pretrained` (which retries the network for half a
minute offline): it resolves to a local folder first, downloading with a progress bar where
the Hub is reachable, and otherwise raises ModelNotDownloadedError naming `asn models pull`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from audiosubnet.errors import ModelNotDownloadedError

log = logging.getLogger(__name__)


def is_local(repo_or_path: str) -> bool:
    p = Path(repo_or_path).expanduser()
    return p.exists() or repo_or_path.startswith((".", "/", "~"))


def resolve(repo_or_path: str, *, model_id: str | None = None, allow_patterns: Sequence[str] | None = None,
            download: bool = True) -> Path:
    """A local folder holding the model files, downloading on machines with internet."""
    if is_local(repo_or_path):
        p = Path(repo_or_path).expanduser()
        if not p.exists():
            raise ModelNotDownloadedError(model_id or repo_or_path, f"no such folder {p}")
        return p
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_or_path, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        pass
    if not download or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelNotDownloadedError(model_id or repo_or_path, "offline")
    return pull(repo_or_path, model_id=model_id, allow_patterns=allow_patterns)


def pull(repo: str, *, model_id: str | None = None, allow_patterns: Sequence[str] | None = None) -> Path:
    """Download a repo snapshot into the HF cache, with huggingface_hub's progress bars."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=allow_patterns))
    except Exception as e:
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        if "offline" in detail.lower() or "connect" in str(e).lower() or "resolve" in str(e).lower():
            detail = "cannot reach huggingface.co"
        raise ModelNotDownloadedError(model_id or repo, detail) from e


def status(repo: str) -> tuple[bool, int | None]:
    """(downloaded, bytes on disk) from the HF cache, without touching the network."""
    if is_local(repo):
        p = Path(repo).expanduser()
        if not p.exists():
            return False, None
        return True, folder_size(p)
    try:
        from huggingface_hub import scan_cache_dir

        for r in scan_cache_dir().repos:
            if r.repo_id == repo and r.repo_type == "model":
                return True, int(r.size_on_disk)
    except Exception:
        pass
    return False, None


def remove(repo: str) -> int:
    """Delete every cached revision of a repo; returns bytes freed. Local folders are not touched."""
    if is_local(repo):
        return 0
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return 0
    try:
        info = scan_cache_dir()
    except Exception:
        return 0
    revs = [rev.commit_hash for r in info.repos if r.repo_id == repo and r.repo_type == "model" for rev in r.revisions]
    if not revs:
        return 0
    strategy = info.delete_revisions(*revs)
    freed = int(strategy.expected_freed_size)
    strategy.execute()
    return freed


def folder_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
