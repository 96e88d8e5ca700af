"""Framework helpers for engines and scorers: onnxruntime sessions, threads, bundled files, Hub folders, torch."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from audiosubnet.errors import DependencyError, ModelNotDownloadedError

if TYPE_CHECKING:
    import torch

_lock = threading.Lock()


def cpu_threads() -> int:
    """Threads for one CPU-bound model: ASN_SCORE_THREADS, else ASN_ORT_THREADS, else every core."""
    for name in ("ASN_SCORE_THREADS", "ASN_ORT_THREADS"):
        env = os.environ.get(name, "")
        if env.isdigit() and int(env) > 0:
            return int(env)
    return max(1, os.cpu_count() or 1)


def package_file(package: str, *parts: str, extra: str = "scoring", what: str = "scoring") -> Path:
    """A data file shipped inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(package, extra, what)
    for base in spec.submodule_search_locations:
        p = Path(base).joinpath(*parts)
        if p.is_file() or p.is_dir():
            return p
    raise DependencyError(package, extra, what)


def ort_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:  # onnxruntime: untyped
    """An onnxruntime CPU session with a fixed thread count (no oversubscription on small machines)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise DependencyError("onnxruntime", "scoring", "ONNX scorers") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_metadata(session: Any) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:
        return {}


def hf_folder(repo_or_path: str, *, what: str, allow_patterns: list[str] | None = None) -> Path:
    """A local folder for a Hub repo or a path; offline and not cached -> ModelNotDownloadedError."""
    from audiosubnet.runtime import hub

    try:
        return hub.resolve(repo_or_path, model_id=repo_or_path, allow_patterns=allow_patterns)
    except ModelNotDownloadedError as e:
        e.hint = (f"{what} needs '{repo_or_path}'. On a machine with internet run "
                  f"`hf download {repo_or_path}` (or pass a local folder), or choose an offline scorer "
                  "in the `score` settings.")
        raise


def require_torch(what: str) -> ModuleType:
    try:
        import torch
    except ImportError as e:
        raise DependencyError("torch", "hf", what) from e
    from audiosubnet.runtime.device import set_cpu_threads

    with _lock:
        set_cpu_threads()
    return torch


def require_transformers(what: str) -> ModuleType:
    require_torch(what)
    try:
        import transformers
    except ImportError as e:
        raise DependencyError("transformers", "hf", what) from e
    return transformers


def torch_device_dtype(device: str, dtype: str, *, cpu_dtype: str = "float32") -> tuple[torch.device, torch.dtype]:
    """(torch.device, torch.dtype): fp32 on CPU whatever was asked (half precision is slow there)."""
    import torch

    from audiosubnet.runtime.device import torch_dtype

    dev = torch.device(device)
    name = dtype if dev.type == "cuda" else cpu_dtype
    return dev, torch_dtype(name)


def from_pretrained(cls: Any, folder: Path, dtype: Any) -> Any:
    """`cls.from_pretrained(folder)` in a torch dtype, on transformers 5 (`dtype=`) and 4 (`torch_dtype=`)."""
    try:
        return cls.from_pretrained(str(folder), dtype=dtype)
    except TypeError:  # transformers 4.x
        return cls.from_pretrained(str(folder), torch_dtype=dtype)


def torch_module_bytes(*modules: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (None entries are skipped)."""
    total = 0
    for m in modules:
        if m is None:
            continue
        for t in list(m.parameters()) + list(m.buffers()):
            total += t.numel() * t.element_size()
    return total
