"""Kyutai Pocket TTS: zero-shot voice cloning from a few seconds of reference audio.

Why this model: MIT code (the official `pocket-tts` package on PyPI) and CC-BY-4.0 weights, so a miner
may use it commercially; about 100M parameters, faster than real time on a CPU and far more on a
GPU; strong speaker similarity in its paper's zero-shot evaluation; and it installs beside an
existing torch with no torchaudio and no pinned torch (Chatterbox pins torch/torchaudio 2.6, F5-TTS
and XTTS-v2 import torchaudio, and the F5-TTS/XTTS-v2 weights are non-commercial).

Model ids: `pocket` (= `pocket:english`: the package's English config), `pocket:<language>`
(a config shipped in the package: french, german, ...), `pocket:/path/config.yaml`, or a folder
holding `config.yaml`.

Files: the config's `hf://repo/file@revision` entries (weights, tokenizer) are resolved here, from
the Hugging Face cache or downloaded with a progress bar where the Hub is reachable (never by the
package itself, which would retry the network offline); a resolved copy of the config pointing to
local files is then loaded through the package's documented `TTSModel.load_model(config=...)`.
The voice-cloning weights (`kyutai/pocket-tts`) are gated on the Hub: accept their terms on the
model page and log in (`hf auth login`) once before `asn models pull pocket`.

Each request's reference (resampled to the model's rate, at most 30 s) becomes a voice state with
`get_state_for_audio_prompt`; states are cached per reference. `generate_audio` runs one request at
a time (the package decodes one stream per state). `seed` makes a request repeatable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine, SynthesisRequest
from audiosubnet.errors import DependencyError, EngineError, InputError, ModelNotDownloadedError
from audiosubnet.runtime import hub

log = logging.getLogger(__name__)

VOICE_CLONING_REPO = "kyutai/pocket-tts"
MAX_REFERENCE_S = 30.0
PEAK = 0.89
#: config keys (dotted) that may hold hf:// or local file paths
PATH_KEYS = ("weights_path", "weights_path_without_voice_cloning", "flow_lm.weights_path",
             "flow_lm.lookup_table.tokenizer_path", "mimi.weights_path")


def _configs_dir() -> Path:
    """pocket-tts's bundled configs (`pocket_tts/config/`), found without importing it (it imports torch:
    seconds that `asn models list` must not spend)."""
    import importlib.util

    spec = importlib.util.find_spec("pocket_tts")
    if spec is None or not spec.submodule_search_locations:
        _require()  # raises the DependencyError naming what to install
        raise DependencyError("pocket-tts", "hf", "the pocket engine")
    return Path(next(iter(spec.submodule_search_locations))) / "config"


def _require() -> Any:  # the pocket_tts module (an untyped package)
    try:
        import pocket_tts
        import torch  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        err = DependencyError(getattr(e, "name", None) or "pocket-tts", "hf", "the pocket engine")
        err.hint = "Install torch first, then `pip install 'audiosubnet[hf]'` (it brings pocket-tts>=4)."
        raise err from e
    return pocket_tts


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        d = d[part]
    d[parts[-1]] = value


def parse_hf_path(path: str) -> tuple[str, str, str | None]:
    """'hf://org/repo/dir/file@rev' -> ('org/repo', 'dir/file', 'rev')."""
    rest = path.removeprefix("hf://")
    parts = rest.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    revision = None
    if "@" in filename:
        filename, revision = filename.rsplit("@", 1)
    return repo, filename, revision


def resolve_file(path: str, *, model_id: str, download: bool) -> Path:
    """A local file for an hf:// path or a local path (never a network retry loop offline)."""
    if not path.startswith("hf://"):
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotDownloadedError(model_id, f"no file {p}")
        return p
    from huggingface_hub import hf_hub_download

    repo, filename, revision = parse_hf_path(path)
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=True))
    except Exception:
        pass
    if not download:
        raise ModelNotDownloadedError(model_id, f"{repo}/{filename} is not in the Hugging Face cache")
    if hub.offline():
        raise ModelNotDownloadedError(model_id, f"{repo}/{filename} is not in the Hugging Face cache; "
                                                f"{hub.offline_detail()}")
    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except Exception as e:
        raise hub.download_error(model_id, repo, e) from e


class PocketCloneEngine(SpeechEngine):
    name = "pocket"
    description = "Kyutai Pocket TTS: zero-shot voice cloning (~100M params; fast on CPU and GPU)"
    default_model = "english"
    license = "pocket-tts MIT; weights CC-BY-4.0 (voice-cloning weights gated: accept the terms)"

    def __init__(self, model: str | None = None):
        super().__init__(model)
        self._tts: Any = None  # the loaded pocket_tts model (untyped package)
        self._lock = threading.RLock()
        self._states: OrderedDict[str, object] = OrderedDict()
        self._config_cache: dict[str, Any] | None = None

    # ---- files ---------------------------------------------------------------------------------
    def config_source(self) -> Path:
        m = self.model
        p = Path(m).expanduser()
        if m.endswith((".yaml", ".yml")) or p.is_file():
            return p
        if p.is_dir() or os.sep in m:
            return p / "config.yaml"
        return _configs_dir() / f"{m}.yaml"

    def raw_config(self) -> dict[str, Any]:
        if self._config_cache is None:
            import yaml

            src = self.config_source()
            if not src.is_file():
                raise ModelNotDownloadedError(self.model_id, f"no Pocket TTS config {src}")
            try:
                self._config_cache = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
            except (OSError, ValueError) as e:
                raise EngineError(f"cannot read the Pocket TTS config {src}: {e}") from e
        return self._config_cache

    def files(self) -> dict[str, str]:
        """Config key -> hf:// or local path, for every file the model loads (cloning weights only)."""
        cfg = self.raw_config()
        out = {k: v for k in PATH_KEYS if isinstance(v := _get(cfg, k), str) and v}
        out.pop("weights_path_without_voice_cloning", None)  # a clone engine needs the cloning weights
        return out

    def resolved_config(self, download: bool) -> Path:
        """A copy of the config whose file entries are local paths (written under ASN_HOME)."""
        import copy

        import yaml

        from audiosubnet.config import default_home

        cfg = copy.deepcopy(self.raw_config())
        for key, path in self.files().items():
            _set(cfg, key, str(resolve_file(path, model_id=self.model_id, download=download)))
        cfg.pop("weights_path_without_voice_cloning", None)
        text = yaml.safe_dump(cfg, sort_keys=True)
        folder = default_home() / "pocket"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.yaml"
        if not out.is_file():
            from audiosubnet.audio import write_atomic

            write_atomic(out, text.encode())
        return out

    # ---- contract ------------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        try:
            sr = int(_get(self.raw_config(), "mimi.sample_rate") or 24000)
        except Exception:
            sr = 24000
        return Capabilities(sample_rate=sr, max_text_chars=1000, batching=False, max_batch=8,
                            devices=("cpu", "cuda"), clone=True, tts=False, seedable=True)

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        ref = request.reference
        if ref is not None and (ref.duration < 0.5 or not np.isfinite(ref.samples).all()):
            raise InputError("the reference audio is shorter than 0.5 s or not finite")

    def estimate_bytes(self) -> int:
        total = 0
        try:
            for path in self.files().values():
                try:
                    total += resolve_file(path, model_id=self.model_id, download=False).stat().st_size
                except ModelNotDownloadedError:
                    total += 0
        except Exception:
            pass
        return int(total * 1.3) + 64 * 2**20 if total else 600 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        _require()
        from pocket_tts import TTSModel

        from audiosubnet.runtime.device import set_cpu_threads

        config = self.resolved_config(download=True)
        with self._lock:
            try:
                tts = TTSModel.load_model(config=str(config))
            except Exception as e:
                raise EngineError(f"cannot load {self.model_id}: {type(e).__name__}: {e}") from e
            if not getattr(tts, "has_voice_cloning", True):
                raise ModelNotDownloadedError(self.model_id, "only the weights without voice cloning are here")
            if device.startswith("cuda"):
                tts = tts.to(device)
            else:
                set_cpu_threads()
            self._tts = tts.eval()
            self._states.clear()
            self.device, self.dtype, self.loaded = device, "float32", True

    def unload(self) -> None:
        with self._lock:
            self._tts = None
            self._states.clear()
        super().unload()

    def memory_bytes(self) -> int:
        if self._tts is None:
            return self.estimate_bytes()
        return int(sum(p.numel() * p.element_size() for p in self._tts.parameters())) + 32 * 2**20

    def bench_extras(self, reference: Audio | None) -> dict[str, float]:
        """`voice_prompt_s`: the seconds to turn `reference` into a voice state (not cached)."""
        if reference is None or self._tts is None:
            return {}
        import time

        import torch

        with self._lock:
            self._states.clear()
            t0 = time.perf_counter()
            self._state(reference)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize(self.device)
            return {"voice_prompt_s": time.perf_counter() - t0}

    def warmup(self) -> None:
        t = np.arange(24000, dtype=np.float32) / 24000
        tone = (0.2 * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
        self._synthesize([SynthesisRequest("Warm up.", reference=Audio(tone, 24000), seed=0)])

    # ---- synthesis -----------------------------------------------------------------------------
    def _state(self, ref: Audio) -> object:  # pocket_tts's voice state
        import torch

        h = hashlib.sha1(ref.samples.tobytes())
        h.update(str(ref.sample_rate).encode())
        key = h.hexdigest()
        if key in self._states:
            self._states.move_to_end(key)
            return self._states[key]
        sr = self._tts.sample_rate
        x = ref.resampled(sr).samples[: int(MAX_REFERENCE_S * sr)]
        wav = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0).to(self._tts.device)
        state = self._tts.get_state_for_audio_prompt(wav)
        self._states[key] = state
        while len(self._states) > 16:
            self._states.popitem(last=False)
        return state

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        out = []
        with self._lock, torch.no_grad():  # not inference_mode: the package decodes in a worker thread
            sr = int(self._tts.sample_rate)
            for r in requests:
                assert r.reference is not None  # check(): tts=False
                state = self._state(r.reference)
                if r.seed is not None:
                    torch.manual_seed(int(r.seed))
                try:
                    wav = self._tts.generate_audio(state, r.text, copy_state=True)
                except ValueError as e:  # the package's word for unusable text
                    raise InputError(f"{self.model_id} cannot speak this text: {e}") from e
                x = wav.detach().float().cpu().numpy().reshape(-1)
                if r.speed != 1.0:
                    x = Audio(x, sr).resampled(int(round(sr * r.speed))).samples  # pitch changes with speed
                x = np.nan_to_num(x)
                peak = float(np.max(np.abs(x))) if len(x) else 0.0
                if peak > PEAK:
                    x = x * (PEAK / peak)
                out.append(Audio(x.astype(np.float32), sr))
        return out

    # ---- models list/pull/rm -------------------------------------------------------------------
    @classmethod
    def catalog(cls) -> list[str]:
        return [cls.default_model]

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        e = cls(model)
        mid = e.model_id
        try:
            files = e.files()
        except (DependencyError, ModelNotDownloadedError, EngineError) as err:
            return ModelStatus(mid, False, None, "pip package pocket-tts", cls.license, notes=str(err))
        size, ok = 0, True
        for path in files.values():
            try:
                size += resolve_file(path, model_id=mid, download=False).stat().st_size
            except ModelNotDownloadedError:
                ok = False
        hub_files = any(p.startswith("hf://") for p in files.values())
        source = ("HF cache" if ok else "HF") if hub_files else "path"
        return ModelStatus(mid, ok, size or None, source, cls.license)

    @classmethod
    def pull(cls, model: str) -> ModelStatus:
        e = cls(model)
        for path in e.files().values():
            resolve_file(path, model_id=e.model_id, download=True)
        return cls.status(model)

    @classmethod
    def remove(cls, model: str) -> int:
        e = cls(model)
        repos = {parse_hf_path(p)[0] for p in e.files().values() if p.startswith("hf://")}
        return sum(hub.remove(r) for r in repos)


# ---- random-weight stand-ins (tests, GPU timing without the Hub) ------------------------------------
def build_random_pocket(path: str | Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """A Pocket TTS model with random weights in `path` (config.yaml + model.safetensors + tokenizer.json),
    loadable as `pocket:<path>`: the package's own classes, the English config's structure; "tiny" shrinks
    every width and depth, "full" keeps the published sizes (for timing)."""
    _require()
    import copy

    import safetensors.torch
    import torch
    import yaml
    from pocket_tts import TTSModel
    from pocket_tts.utils.config import CONFIGS_DIR, Config
    from tokenizers import Tokenizer, models, pre_tokenizers

    if size not in ("tiny", "full"):
        raise ValueError("size is tiny or full")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(yaml.safe_load((Path(CONFIGS_DIR) / "english.yaml").read_text(encoding="utf-8")))
    n_bins = int(cfg["flow_lm"]["lookup_table"]["n_bins"]) if size == "full" else 0
    chars = list(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-;:\"()")
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    for i in range(len(vocab), n_bins):  # pad to the published vocabulary size
        vocab[f"<x{i}>"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.save(str(path / "tokenizer.json"))
    lt = cfg["flow_lm"]["lookup_table"]
    lt.update(n_bins=tok.get_vocab_size(), tokenizer="tokenizers", tokenizer_path=str(path / "tokenizer.json"))
    if size == "tiny":
        cfg["flow_lm"]["flow"] = {"depth": 1, "dim": 16}
        cfg["flow_lm"]["transformer"] = {"d_model": 32, "hidden_scale": 2, "max_period": 10000, "num_heads": 2,
                                         "num_layers": 1}
        lt["dim"] = 32
        m = cfg["mimi"]
        m.update(inner_dim=8, outer_dim=32)
        m["seanet"].update(dimension=32, n_filters=4)
        m["transformer"].update(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, input_dimension=32,
                                output_dimensions=[32])
        m["quantizer"] = {"dimension": 8, "output_dimension": 32}
    for key in ("weights_path", "weights_path_without_voice_cloning"):
        cfg.pop(key, None)
    torch.manual_seed(seed)
    model = TTSModel._from_pydantic_config_with_weights(Config(**cfg), 0.3, 1, None, -4.0, origin=None)
    with torch.no_grad():  # the package starts the voice projection at zero; a random one lets the voice matter
        model.flow_lm.speaker_proj_weight.normal_(0.0, 0.5 if size == "tiny" else 0.02)
    safetensors.torch.save_file(model.state_dict(), str(path / "model.safetensors"))
    cfg["weights_path"] = str(path / "model.safetensors")
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")
    return path
