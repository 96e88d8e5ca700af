"""The base of the Hugging Face (transformers) speech engines: `HFSpeechEngine` and what mms, speecht5
and bark share.

- `HFSpeechEngine`: Hub files (local folder, HF cache or download; weights present), config.json,
  memory accounting and estimates, torch set-up (threads, dtype, TF32), locking, models list/pull/rm;
- batching helpers: per-request seeds, length-sorted chunks, padded ids, frame masks;
- `hifigan_forward`: batched HiFi-GAN with the padding masked before every convolution, so an
  item's audio is the same alone or in a batch;
- weight counting from safetensors headers (estimates before anything is loaded).
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, overload

import numpy as np

from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine
from audiosubnet.errors import DependencyError, EngineError, ModelNotDownloadedError
from audiosubnet.runtime import hub

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


# ---- shared helpers --------------------------------------------------------------------------
def length_sorted_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices grouped into chunks of at most `size`, longest first, so a chunk pads little."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = max(1, size)
    return [order[i:i + size] for i in range(0, len(order), size)]


def strip_weight_norm(module: torch.nn.Module) -> None:
    """Fold weight-norm (parametrizations or legacy hooks) into plain weights: one kernel less per conv."""
    import torch
    from torch.nn.utils import parametrize

    for mod in module.modules():
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
        elif hasattr(mod, "weight_g") and hasattr(mod, "weight_v"):
            with contextlib.suppress(ValueError):
                torch.nn.utils.remove_weight_norm(mod)


def module_bytes(*modules: torch.nn.Module | None) -> int:
    total = 0
    for m in modules:
        if m is None:
            continue
        seen = set()
        for t in (*m.parameters(), *m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def padded_ids(ids: list[list[int]], pad_id: int, device: torch.device | str,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) as (batch, length or longest) long tensors on `device`, built in numpy."""
    import torch

    lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    arr = np.full((len(ids), max(int(lens.max()), length or 0)), pad_id, dtype=np.int64)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = x
    mask = (np.arange(arr.shape[1])[None, :] < lens[:, None]).astype(np.int64)
    return torch.from_numpy(arr).to(device), torch.from_numpy(mask).to(device)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def batch_bucket(n: int) -> int:
    """Batch sizes the GPU sees: 1-8 as they are, then multiples of 8. With lengths also bucketed,
    a long-running miner meets a bounded set of shapes, so cuDNN's per-shape plans (about 100 ms of CPU
    for a VITS forward pass with new shapes) are built once per bucket instead of once per request."""
    return n if n <= 8 else round_up(n, 8)


def frame_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    import torch

    return (torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1).to(dtype)


def hifigan_lengths(vocoder: Any, frames: Sequence[int]) -> list[int]:
    """Each item's sample count after the vocoder's transposed convolutions (from its frame count)."""
    host = list(frames)
    for up in vocoder.upsampler:
        s, p, k = up.stride[0], up.padding[0], up.kernel_size[0]
        host = [(n - 1) * s - 2 * p + k for n in host]
    return host


@overload
def hifigan_forward(vocoder: Any, x: torch.Tensor, lengths: Sequence[int] | None = None,
                    cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int]]: ...


@overload
def hifigan_forward(vocoder: Any, x: torch.Tensor, lengths: torch.Tensor,
                    cond: torch.Tensor | None = None) -> tuple[torch.Tensor, None]: ...


def hifigan_forward(vocoder: Any, x: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None,
                    cond: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int] | None]:
    """HiFi-GAN (VitsHifiGan or SpeechT5HifiGan modules) on (batch, channels, frames).

    With per-item frame `lengths`, every convolution's input is zeroed past each item's end, so
    each item sees exactly the zero padding it would see alone: batched output == unbatched output.
    `lengths` is a list of ints, or a 1-D tensor on x's device (no host data: what a CUDA graph needs).
    Returns (waveform (batch, samples), per-item sample lengths; None when `lengths` is a tensor).
    """
    import torch
    import torch.nn.functional as F

    slope = vocoder.config.leaky_relu_slope
    batch, _, frames = x.shape
    lens: Any  # per-item lengths on the device (a tensor), or None when nothing is masked
    if torch.is_tensor(lengths):
        host, masked, lens = None, True, lengths
    else:
        host = list(lengths) if lengths is not None else [frames] * batch
        masked = min(host) < frames  # a shorter item, or frames padded to a shape bucket
        lens = torch.tensor(host, device=x.device) if masked else None
    m = frame_mask(lens, frames, x.dtype) if masked else None

    def act(h: torch.Tensor, negative_slope: float) -> torch.Tensor:
        # leaky ReLU, then zero the padding (in place on the fresh tensor)
        a = F.leaky_relu(h, negative_slope)
        return a if m is None else a.mul_(m)

    h = vocoder.conv_pre(x if m is None else x * m)
    if cond is not None and getattr(vocoder, "cond", None) is not None:
        h = h + vocoder.cond(cond)
    n_k = vocoder.num_kernels
    for i, up in enumerate(vocoder.upsampler):
        h = up(act(h, slope))
        if masked:
            s, p, k = up.stride[0], up.padding[0], up.kernel_size[0]
            lens = (lens - 1) * s - 2 * p + k
            m = frame_mask(lens, h.shape[-1], h.dtype)
        acc = None
        for j in range(n_k):
            rb = vocoder.resblocks[i * n_k + j]
            r_h = h
            for c1, c2 in zip(rb.convs1, rb.convs2, strict=True):
                res = r_h
                r_h = c1(act(r_h, rb.leaky_relu_slope))
                r_h = c2(act(r_h, rb.leaky_relu_slope)).add_(res)
            acc = r_h if acc is None else acc.add_(r_h)
        assert acc is not None  # n_k >= 1 resblocks per upsampler
        h = acc.div_(n_k)
    h = vocoder.conv_post(act(h, 0.01))
    return torch.tanh(h).squeeze(1), (hifigan_lengths(vocoder, host) if host is not None else None)


def safetensors_numel(path: Path) -> tuple[int, int]:
    """(elements, bytes) of a .safetensors file, from its JSON header only."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    numel = nbytes = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        numel += count
        nbytes += count * _DTYPE_BYTES.get(info["dtype"], 4)
    return numel, nbytes


def weights_numel(folder: Path) -> int | None:
    """Parameter count of the weights in a model folder (safetensors header, else .bin size / 4)."""
    files = [p for p in folder.rglob("*") if p.suffix in hub.WEIGHT_SUFFIXES and p.is_file()]
    st = [p for p in files if p.suffix == ".safetensors"]
    if st:
        return sum(safetensors_numel(p)[0] for p in st)
    if files:
        return sum(p.stat().st_size for p in files) // 4
    return None


class HFSpeechEngine(SpeechEngine):
    """What the transformers engines share: Hub files, memory accounting, threads, locking."""

    #: files fetched from a Hub repo (weights: safetensors first, .bin only where a repo has nothing else)
    allow_patterns: ClassVar[tuple[str, ...]] = ("*.json", "*.txt", "*.model", "*.safetensors")
    known_models: ClassVar[tuple[str, ...]] = ()
    #: fp32 bytes of known Hub models, for estimate_bytes() before anything is downloaded
    known_bytes: ClassVar[dict[str, int]] = {}

    def __init__(self, model: str | None = None):
        super().__init__(model)
        self._lock = threading.RLock()
        self._torch_dtype: torch.dtype | None = None
        self._ids: OrderedDict[str, list[int]] = OrderedDict()  # text -> token ids (check() + synthesize)
        self._ids_lock = threading.Lock()
        self._caps: Capabilities | None = None

    @property
    def capabilities(self) -> Capabilities:
        """Declared capabilities; computed once per load (check() reads them for every request)."""
        caps = self._caps
        if caps is None:
            caps = self._capabilities()
            if self.loaded:
                self._caps = caps
        return caps

    def _capabilities(self) -> Capabilities:
        raise NotImplementedError

    def cached_ids(self, text: str, tokenize: Callable[[str], list[int]]) -> list[int]:
        """Token ids of `text`, tokenized once for check() and synthesize() (small LRU)."""
        with self._ids_lock:
            ids = self._ids.get(text)
            if ids is not None:
                self._ids.move_to_end(text)
                return ids
        ids = tokenize(text)
        with self._ids_lock:
            self._ids[text] = ids
            while len(self._ids) > 4096:
                self._ids.popitem(last=False)
        return ids

    # ---- files ------------------------------------------------------------------------------
    def repos(self) -> list[str]:
        """Hub repos or local folders this model needs (the first is the model itself)."""
        return [self.model]

    def local(self, repo: str, *, download: bool) -> Path:
        """A local folder for `repo`: the folder itself, the HF cache, or a download."""
        folder = hub.resolve(repo, model_id=self.model_id, allow_patterns=self.allow_patterns, download=download)
        if folder.is_dir() and not hub.has_weights(folder) and not hub.is_local(repo):
            if not download or hub.offline():
                raise ModelNotDownloadedError(self.model_id, f"no weights for {repo} in the cache")
            folder = hub.pull(repo, model_id=self.model_id, allow_patterns=(*self.allow_patterns, "*.bin"))
        if folder.is_dir() and not hub.has_weights(folder):
            raise ModelNotDownloadedError(self.model_id, f"no model weights in {folder}")
        return folder

    def read_config(self, repo: str | None = None) -> dict[str, Any]:
        """config.json of a downloaded model, {} when it is not there (never downloads)."""
        try:
            folder = self.local(repo or self.model, download=False)
            config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            return config
        except Exception:
            return {}

    # ---- memory -----------------------------------------------------------------------------
    def estimate_bytes(self) -> int:
        size = {"float32": 4}.get(self.dtype, 2)
        total = 0
        for repo in self.repos():
            numel = None
            with contextlib.suppress(Exception):
                numel = weights_numel(self.local(repo, download=False))
            total += numel * size if numel else self.known_bytes.get(repo, 512 * 2**20) * size // 4
        return int(total * 1.1) + 32 * 2**20  # + working memory for one batch

    def modules(self) -> list[torch.nn.Module]:
        """Loaded torch modules (for memory_bytes and unload)."""
        return []

    def extra_tensors(self) -> list[torch.Tensor | None]:
        """Tensors kept beside the modules (fused weights, presets)."""
        return []

    def memory_bytes(self) -> int:
        if not self.loaded:
            return self.estimate_bytes()
        return module_bytes(*self.modules()) + tensor_bytes(self.extra_tensors())

    # ---- set-up helpers ---------------------------------------------------------------------
    def torch_setup(self, device: str, dtype: str) -> torch.dtype:
        """Import torch, pin CPU threads, and return the torch dtype to load in (fp32 on CPU)."""
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as e:
            raise DependencyError(getattr(e, "name", None) or "transformers", "hf", f"the {self.name} engine") from e
        from audiosubnet.runtime.device import set_cpu_threads, torch_dtype

        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise EngineError(f"{self.model_id}: CUDA was asked for but torch sees no GPU")
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 on Ampere+: TF32 tensor cores
            torch.backends.cudnn.allow_tf32 = True
        else:
            set_cpu_threads()
            if dtype != "float32":
                log.info("%s: %s asked for on CPU; using float32", self.model_id, dtype)
            dtype = "float32"
        self.device, self.dtype = device, dtype
        self._torch_dtype = torch_dtype(dtype)
        try:  # transformers' "Loading weights" bars: the commands draw their own progress
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        except Exception:
            pass
        return self._torch_dtype

    def load_pretrained(self, folder: Path, tokenizer_cls: Any, model_cls: Any, dtype: torch.dtype) -> tuple[Any, Any]:
        """(tokenizer, model) from a local model folder (transformers classes); a failure is an EngineError
        that names the model and the folder."""
        try:
            return tokenizer_cls.from_pretrained(folder), model_cls.from_pretrained(folder, dtype=dtype)
        except Exception as e:
            raise EngineError(f"cannot load {self.model_id} from {folder}: {e}") from e

    def unload(self) -> None:
        with self._lock:
            self.drop()
            self._caps = None
            with self._ids_lock:
                self._ids.clear()
            super().unload()

    def drop(self) -> None:
        """Drop every reference to weights (subclasses clear their attributes)."""

    # ---- models list/pull/rm ----------------------------------------------------------------
    @classmethod
    def catalog(cls) -> list[str]:
        return list(cls.known_models) or [cls.default_model]

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        engine = cls(model)
        mid = engine.model_id
        downloaded, size, sources = True, 0, []
        for repo in engine.repos():
            ok, nbytes = hub.status(repo)
            if ok:
                try:
                    engine.local(repo, download=False)
                except Exception:
                    ok = False
            downloaded = downloaded and ok
            size += nbytes or 0
            sources.append("path" if hub.is_local(repo) else "HF cache" if ok else "HF")
        return ModelStatus(mid, downloaded, size or None, " + ".join(sorted(set(sources))), cls.license,
                           notes=engine.status_notes())

    def status_notes(self) -> str:
        return ""

    @classmethod
    def pull(cls, model: str) -> ModelStatus:
        engine = cls(model)
        for repo in engine.repos():
            engine.local(repo, download=True)
        return cls.status(model)

    @classmethod
    def remove(cls, model: str) -> int:
        """Delete the model's own Hub files (shared ones, like SpeechT5's vocoder, stay)."""
        return hub.remove(cls(model).repos()[0])
