"""Hugging Face Hub files: resolve a repo or a local folder to a local path, pull, remove.

Loading code never hands a repo id to `from_pretrained` (which retries the network for half a
minute offline): it resolves to a local folder first, downloading with a progress bar where
the Hub is reachable, and otherwise raises ModelNotDownloadedError naming `asn models pull`.

Whether the Hub is reachable is decided once per process, fast: `HF_HUB_OFFLINE=1` says no
outright; otherwise one TCP connection to the Hub (or to the HTTPS proxy) must open within
`ASN_HUB_TIMEOUT` seconds (default 3). Every engine asks `offline()` before downloading, so a
machine without internet gets the same one-line error from each, at once, instead of retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from audiosubnet.errors import ModelNotDownloadedError

if TYPE_CHECKING:
    from huggingface_hub import HFCacheInfo

log = logging.getLogger(__name__)


def is_local(repo_or_path: str) -> bool:
    p = Path(repo_or_path).expanduser()
    return p.exists() or repo_or_path.startswith((".", "/", "~"))


def _patterns(allow_patterns: Sequence[str] | None) -> list[str] | None:
    """huggingface_hub takes a list (a bare string would be one pattern, a tuple is not accepted by its types)."""
    return None if allow_patterns is None else list(allow_patterns)


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
        return Path(snapshot_download(repo_or_path, allow_patterns=_patterns(allow_patterns), local_files_only=True))
    except Exception:
        pass
    if not download:
        raise ModelNotDownloadedError(model_id or repo_or_path, "not in the Hugging Face cache")
    return pull(repo_or_path, model_id=model_id, allow_patterns=allow_patterns)


_OFF = ("1", "true", "yes", "on")
_probes: dict[tuple[str, int], bool] = {}
_probe_lock = threading.Lock()


def offline() -> bool:
    """True when downloads cannot work: HF_HUB_OFFLINE is set, or the Hub cannot be reached quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFF:
        return True
    return not reachable()


def offline_detail() -> str:
    return "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFF else \
        f"cannot reach {_target()[0]}"


def _target() -> tuple[str, int]:
    """(host, port) a download connects to first: the HTTPS proxy if one is set, else the Hub endpoint."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None) if endpoint.startswith("https") else None
    url = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else endpoint)
    try:
        port = url.port
    except ValueError:
        port = None
    return url.hostname or "huggingface.co", port or (443 if url.scheme == "https" else 80)


def reachable(timeout: float | None = None) -> bool:
    """Whether a TCP connection to the Hub (or the proxy) opens in time; asked once per process."""
    target = _target()
    with _probe_lock:
        if target in _probes:
            return _probes[target]
    limit = timeout if timeout is not None else float(os.environ.get("ASN_HUB_TIMEOUT") or 3.0)
    result: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection(target, timeout=limit).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, name="asn-hub-probe", daemon=True)
    t.start()
    t.join(limit + 0.2)
    ok = bool(result and result[0])
    if not ok:
        log.debug("the Hugging Face Hub (%s:%d) is not reachable within %g s", *target, limit)
    with _probe_lock:
        _probes[target] = ok
    return ok


def pull(repo: str, *, model_id: str | None = None, allow_patterns: Sequence[str] | None = None) -> Path:
    """Download a repo snapshot into the HF cache, with huggingface_hub's progress bars."""
    from huggingface_hub import snapshot_download

    if offline():
        raise ModelNotDownloadedError(model_id or repo, offline_detail())

    global _scanned
    _scanned = None
    try:
        return Path(snapshot_download(repo, allow_patterns=_patterns(allow_patterns)))
    except Exception as e:
        raise download_error(model_id or repo, repo, e) from e


def download_error(model_id: str, repo: str, e: BaseException) -> ModelNotDownloadedError:
    """One clear line for a failed download, whatever huggingface_hub raised (its own messages are long)."""
    text = str(e)
    low = text.lower()
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403) or "gated" in low:
        err = ModelNotDownloadedError(model_id, f"{repo} is gated or private")
        err.hint = (f"Accept its terms on huggingface.co/{repo}, run `hf auth login`, then "
                    f"`asn models pull {model_id}`.")
        return err
    if status == 404 or "not found" in low and "connection" not in low:
        return ModelNotDownloadedError(model_id, f"{repo} has no such file on the Hub")
    return ModelNotDownloadedError(model_id, f"cannot download from {_target()[0]}")


def status(repo: str) -> tuple[bool, int | None]:
    """(downloaded, bytes on disk) from the HF cache, without touching the network."""
    if is_local(repo):
        p = Path(repo).expanduser()
        if not p.exists():
            return False, None
        return True, folder_size(p)
    try:
        for r in _scan().repos:
            if r.repo_id == repo and r.repo_type == "model":
                return True, int(r.size_on_disk)
    except Exception:
        pass
    return False, None


_scanned: tuple[float, HFCacheInfo] | None = None
SCAN_TTL_S = 5.0


def _scan() -> HFCacheInfo:
    """The HF cache listing, reused for a few seconds (`asn models list` asks once per model)."""
    global _scanned
    import time

    from huggingface_hub import scan_cache_dir

    now = time.monotonic()
    if _scanned is None or now - _scanned[0] > SCAN_TTL_S:
        _scanned = (now, scan_cache_dir())
    return _scanned[1]


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
    global _scanned
    _scanned = None
    strategy = info.delete_revisions(*revs)
    freed = int(strategy.expected_freed_size)
    strategy.execute()
    return freed


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def has_weights(folder: Path) -> bool:
    """Whether a model folder holds weight files (safetensors or .bin) at its top level."""
    return any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file())


def folder_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
