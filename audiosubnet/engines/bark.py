"""Bark (Suno) through transformers: `bark:suno/bark-small` (default), `bark:suno/bark`, `hf:suno/bark`,
or a local folder laid out like those repos (config.json model_type "bark", a BERT vocab, and the
voice presets listed in speaker_embeddings_path.json).

Voices are the repo's presets (`v2/en_speaker_6`, ...) or a path to a Suno `.npz` prompt
(semantic_prompt, coarse_prompt, fine_prompt). Bark samples (temperatures 0.7/0.7/0.5, as Suno's
own code); a request's seed makes it reproducible.

One generation is at most ~13-15 s of audio (768 semantic tokens at 49.9 Hz), so texts are
capped at `max_text_chars` (about one long sentence). Requests run one at a time: transformers'
Bark takes one voice prompt per batch and samples from the global RNG, so neither per-request
voices nor per-request seeds survive batching.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines.base import Capabilities, SynthesisRequest, request_seed
from audiosubnet.engines.hf import HFSpeechEngine
from audiosubnet.errors import EngineError, InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
PROMPT_DIMS = {"semantic_prompt": 1, "coarse_prompt": 2, "fine_prompt": 2}


class BarkEngine(HFSpeechEngine):
    name = "bark"
    description = "Suno Bark (semantic -> coarse -> fine -> EnCodec) through transformers; expressive, slow"
    default_model = "suno/bark-small"
    hf_prefixes = ("suno/bark",)
    hf_model_types = ("bark",)
    license = "transformers Apache-2.0; Bark code and weights MIT"
    known_models = ("suno/bark-small", "suno/bark")
    known_bytes = {"suno/bark-small": 1542 * 2**20, "suno/bark": 4200 * 2**20}
    allow_patterns = ("*.json", "*.txt", "*.safetensors", "speaker_embeddings/**")
    default_voice = "v2/en_speaker_6"

    #: Suno's sampling temperatures (bark/api.py: text_temp=0.7, waveform_temp=0.7; fine 0.5)
    temperatures = {"semantic": 0.7, "coarse": 0.7, "fine": 0.5}

    def __init__(self, model: str | None = None):
        super().__init__(model)
        # loaded transformers objects: typed at that boundary as Any
        self._model: Any = None
        self._tokenizer: Any = None
        self._prompts: dict[str, dict[str, torch.Tensor]] = {}
        self._index: dict[str, dict[str, Any]] | None = None
        self._folder: Path | None = None

    # ---- voices -----------------------------------------------------------------------------
    def _preset_index(self) -> dict[str, dict[str, Any]]:
        if self._index is None:
            try:
                folder = self._folder or self.local(self.model, download=False)
                raw = json.loads((folder / "speaker_embeddings_path.json").read_text(encoding="utf-8"))
                self._index = {k: v for k, v in raw.items() if isinstance(v, dict)}
                self._folder = folder
            except Exception:
                return {}
        return self._index

    def _capabilities(self) -> Capabilities:
        voices = tuple(sorted(self._preset_index()))
        default = self.default_voice if self.default_voice in voices else (voices[0] if voices else None)
        sr = 24000
        if self.loaded:
            gen_sr = getattr(self._model.generation_config, "sample_rate", 0)
            sr = int(gen_sr or self._model.config.codec_config.sampling_rate)
        return Capabilities(
            sample_rate=sr,
            max_text_chars=220,  # ~13 s of speech: Bark's limit for one generation
            batching=False,
            max_batch=1,
            voices=voices,
            open_voices=True,
            default_voice=default,
            devices=("cpu", "cuda"),
            seedable=True,
            languages=("en", "de", "es", "fr", "hi", "it", "ja", "ko", "pl", "pt", "ru", "tr", "zh"),
        )

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        if request.speed != 1.0:
            raise InputError(f"{self.model_id} cannot change the speaking speed (speed must be 1.0)")
        voice = request.voice
        if voice and voice not in self._preset_index() and not (voice.endswith(".npz") and Path(voice).is_file()):
            shown = ", ".join(sorted(self._preset_index())[:6])
            raise InputError(f"unknown voice '{voice}' for {self.model_id}: use a preset ({shown} ...) "
                             "or a path to a Bark .npz prompt")

    # ---- load -------------------------------------------------------------------------------
    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        with self._lock:
            folder = self.local(self.model, download=True)  # first: a missing model fails before imports
            tdtype = self.torch_setup(device, dtype)
            from transformers import AutoTokenizer, BarkModel

            tok, model = self.load_pretrained(folder, AutoTokenizer, BarkModel, tdtype)
            if not isinstance(getattr(model.generation_config, "semantic_config", None), dict):
                from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

                defaults = BarkGenerationConfig().to_dict()  # type: ignore[no-untyped-call]  # unannotated in transformers
                for key in ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config"):
                    setattr(model.generation_config, key, defaults[key])
                bark_config: Any = model.generation_config  # a BarkGenerationConfig, typed as its base class
                bark_config.codebook_size = defaults["codebook_size"]
                bark_config.sample_rate = defaults["sample_rate"]
            gen: Any = model.generation_config  # Suno's sampling, whatever the repo's file says
            gen.semantic_config = {**gen.semantic_config, "do_sample": True,
                                   "temperature": self.temperatures["semantic"]}
            gen.coarse_acoustics_config = {**gen.coarse_acoustics_config, "do_sample": True,
                                           "temperature": self.temperatures["coarse"]}
            gen.fine_acoustics_config = {**gen.fine_acoustics_config, "temperature": self.temperatures["fine"]}
            model.to(device=device, dtype=tdtype).eval()
            self._model, self._tokenizer, self._folder = model, tok, folder
            self._index, self._prompts = None, {}
            self._caps = None
            self.loaded = True

    def modules(self) -> list[torch.nn.Module]:
        return [self._model]

    def extra_tensors(self) -> list[torch.Tensor | None]:
        return [t for p in self._prompts.values() for t in p.values()]

    def drop(self) -> None:
        self._model = self._tokenizer = None
        self._prompts = {}

    def _prompt(self, voice: str | None) -> dict[str, torch.Tensor] | None:
        import torch

        name = voice or self.capabilities.default_voice
        if name is None:
            return None
        if name not in self._prompts:
            index = self._preset_index()
            if name in index:
                arrays = {}
                assert self._folder is not None  # set by setup(), before any request
                base = os.path.abspath(self._folder)
                for key in PROMPT_KEYS:
                    path = os.path.abspath(os.path.join(base, str(index[name].get(key, ""))))
                    if os.path.commonpath([base, path]) != base or not os.path.isfile(path):
                        raise EngineError(f"voice preset {name}: no file for {key} inside {base}")
                    arrays[key] = np.load(path, allow_pickle=False)
            else:
                with np.load(name, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in PROMPT_KEYS if k in z}
            for key in PROMPT_KEYS:
                if key not in arrays or arrays[key].ndim != PROMPT_DIMS[key]:
                    raise InputError(f"voice {name}: '{key}' missing or not {PROMPT_DIMS[key]}-D")
            if len(self._prompts) > 64:
                self._prompts.clear()
            self._prompts[name] = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)).to(self.device)
                                   for k, v in arrays.items()}
        return self._prompts[name]

    # ---- synthesis --------------------------------------------------------------------------
    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        import torch

        sr = self.capabilities.sample_rate
        out = []
        with self._lock, torch.inference_mode():
            for r in requests:
                out.append(Audio(self._generate(r), sr))
        return out

    def _generate(self, request: SynthesisRequest) -> np.ndarray:
        import torch

        model, dev = self._model, torch.device(self.device)
        max_len = model.generation_config.semantic_config.get("max_input_semantic_length", 256)
        enc = self._tokenizer(request.text, return_tensors="pt", padding="max_length", max_length=max_len,
                              truncation=True, add_special_tokens=False, return_attention_mask=True,
                              return_token_type_ids=False)
        prompt = self._prompt(request.voice)
        devices = [dev] if dev.type == "cuda" else []
        # Bark samples from the global RNG: seed it, and give the caller's RNG state back afterwards.
        with torch.random.fork_rng(devices=devices, device_type=dev.type if devices else "cuda"):
            torch.manual_seed(request_seed(request))
            audio = model.generate(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev),
                                   history_prompt=prompt)
        return np.ascontiguousarray(audio.reshape(-1).float().cpu().numpy())
