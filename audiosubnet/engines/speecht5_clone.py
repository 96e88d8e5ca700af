"""SpeechT5 voice cloning: the `speecht5` engine speaking with an x-vector taken from the reference.

SpeechT5 is conditioned on a 512-dim speaker x-vector; this engine computes one from each
request's reference audio with a transformers x-vector model (`AutoModelForAudioXVector`, the
runtime's `XVectorEncoder`, which the speaker-similarity scorer uses too), leased from the ModelCache
the engine is given, and hands it to the wrapped `speecht5` engine. Requests without a reference fall
back to the engine's preset voices.

Model ids: `speecht5-clone` (= `speecht5-clone:microsoft/speecht5_tts`), `speecht5-clone:<folder>`,
`speecht5-clone:MODEL+VOCODER` (as for `speecht5`). The x-vector encoder is, in order: an `xvector/`
folder inside a local model folder, `$ASN_SPEECHT5_XVECTOR` (repo or folder), else
`microsoft/wavlm-base-plus-sv`.

Quality note: SpeechT5 was trained on x-vectors of speechbrain's `spkrec-xvect-voxceleb` (a TDNN,
512-dim). WavLM-base-plus-sv also gives 512-dim x-vectors, but in its own embedding space, so the
voice it selects is only loosely like the reference; point `ASN_SPEECHT5_XVECTOR` at an
`AutoModelForAudioXVector` export of the matching encoder where one is available. For close clones use
the `pocket` engine.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine, SynthesisRequest
from audiosubnet.engines.speecht5 import SpeechT5Engine
from audiosubnet.errors import EngineError, InputError
from audiosubnet.runtime import hub, speaker_embedding
from audiosubnet.runtime.cache import ModelCache
from audiosubnet.runtime.frameworks import hf_folder

DEFAULT_XVECTOR = "microsoft/wavlm-base-plus-sv"
MAX_REFERENCE_S = 30.0


class SpeechT5CloneEngine(SpeechEngine):
    name = "speecht5-clone"
    description = "SpeechT5 + HiFi-GAN speaking with an x-vector computed from the reference (transformers)"
    default_model = SpeechT5Engine.default_model
    license = "transformers Apache-2.0; SpeechT5/HiFi-GAN weights MIT; WavLM-base-plus-sv MIT"
    uses_cache = True  # the x-vector encoder is its own cache entry

    def __init__(self, model: str | None = None, *, cache: ModelCache | None = None):
        super().__init__(model)
        self.cache = cache
        self.inner = SpeechT5Engine(self.model)
        self._xvectors: OrderedDict[str, np.ndarray] = OrderedDict()

    # ---- files ---------------------------------------------------------------------------------
    def xvector_repo(self) -> str:
        tts = self.inner.repos()[0]
        inner = Path(tts).expanduser() / "xvector"
        if hub.is_local(tts) and (inner / "config.json").is_file():
            return str(inner)
        return os.environ.get("ASN_SPEECHT5_XVECTOR") or DEFAULT_XVECTOR

    def repos(self) -> list[str]:
        return [*self.inner.repos(), self.xvector_repo()]

    # ---- contract ------------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return replace(self.inner.capabilities, clone=True)

    def check(self, request: SynthesisRequest) -> None:
        if request.reference is not None:
            if request.reference.duration < 0.5:
                raise InputError("the reference audio is shorter than 0.5 s")
            if not np.isfinite(request.reference.samples).all():
                raise InputError("the reference audio has non-finite samples")
        self.inner.check(replace(request, reference=None))
        super().check(request)

    def estimate_bytes(self) -> int:
        return self.inner.estimate_bytes()  # the encoder is its own cache entry

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        self.inner.setup(device, dtype)
        if self.cache is None:
            raise EngineError(f"{self.model_id} leases its x-vector encoder from a ModelCache; "
                              "lease the engine from one (cache.engine(...))")
        # fail at load time, not on the first request, when the encoder is missing
        hf_folder(self.xvector_repo(), what="speecht5-clone's x-vector encoder")
        self.device, self.dtype, self.loaded = self.inner.device, self.inner.dtype, True

    def unload(self) -> None:
        self.inner.unload()
        self._xvectors.clear()
        super().unload()

    @contextmanager
    def one_pass(self, size: int) -> Iterator[None]:
        with self.inner.one_pass(size):  # the wrapped speecht5 engine splits batches into passes
            yield

    def warmup(self) -> None:
        self.inner.warmup()

    # ---- x-vectors -----------------------------------------------------------------------------
    def xvectors(self, references: Sequence[Audio]) -> list[np.ndarray]:
        """One x-vector per reference (L2-normalised), computed in one batch, cached by content."""
        assert self.cache is not None  # setup() checked it
        keys = [_key(a) for a in references]
        todo = {k: a for k, a in zip(keys, references, strict=True) if k not in self._xvectors}
        if todo:
            clips = [Audio(a.samples[: int(MAX_REFERENCE_S * a.sample_rate)], a.sample_rate) for a in todo.values()]
            with speaker_embedding.lease(self.cache, self.xvector_repo()) as enc:
                emb = enc.embed(clips)
            dim = int(self.inner._model.config.speaker_embedding_dim)
            if emb.shape[1] != dim:
                raise EngineError(f"the x-vector encoder {self.xvector_repo()} gives {emb.shape[1]}-dim vectors; "
                                  f"{self.inner.model_id} needs {dim}")
            for k, e in zip(todo, emb, strict=True):
                self._xvectors[k] = np.asarray(e, dtype=np.float32)
                while len(self._xvectors) > 256:
                    self._xvectors.popitem(last=False)
        return [self._xvectors[k] for k in keys]

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        refs = [r.reference for r in requests if r.reference is not None]
        vecs = iter(self.xvectors(refs)) if refs else iter(())
        inner = self.inner
        with inner._lock:
            plain = []
            for r in requests:
                if r.reference is None:
                    plain.append(replace(r, reference=None))
                    continue
                vec = next(vecs)
                name = f"xvector:{_key_vec(vec)}"
                # the wrapped engine looks voices up in its own table first (see SpeechT5Engine._speaker)
                inner._voices[name] = torch.from_numpy(vec).to(inner.device, inner._model.dtype)
                plain.append(replace(r, voice=name, reference=None, reference_text=None))
            return inner._synthesize(plain)

    # ---- models list/pull/rm -------------------------------------------------------------------
    @classmethod
    def catalog(cls) -> list[str]:
        return [cls.default_model]

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        engine = cls(model)
        inner = SpeechT5Engine.status(model)
        ok, size = hub.status(engine.xvector_repo())
        return ModelStatus(f"{cls.name}:{model}", inner.downloaded and ok, (inner.size_bytes or 0) + (size or 0)
                           or None, inner.source, cls.license, notes=f"x-vectors from {engine.xvector_repo()}")

    @classmethod
    def pull(cls, model: str) -> ModelStatus:
        SpeechT5Engine.pull(model)
        hub.resolve(cls(model).xvector_repo(), model_id=f"{cls.name}:{model}")
        return cls.status(model)

    @classmethod
    def remove(cls, model: str) -> int:
        return SpeechT5Engine.remove(model)


def _key(a: Audio) -> str:
    h = hashlib.sha1(a.samples.tobytes())
    h.update(str(a.sample_rate).encode())
    return h.hexdigest()


def _key_vec(v: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(v, dtype=np.float32).tobytes()).hexdigest()[:16]
