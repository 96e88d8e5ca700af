"""espeak-ng (formant synthesis) through the shared library of the `espeakng-loader` wheel.

Always available, tiny and fast; robotic. Model ids: `espeak:en-us`, `espeak:en-gb`, ... (any
espeak-ng voice); the request's `voice` may add a variant (`en-us+f3`) or name another voice.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

import numpy as np

from audiosubnet.audio import Audio
from audiosubnet.engines import text
from audiosubnet.engines.base import Capabilities, ModelStatus, SpeechEngine, SynthesisRequest
from audiosubnet.errors import DependencyError, EngineError, InputError

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE = 1
DEFAULT_RATE = 175

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _VoiceStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _Espeak:
    """The process-wide espeak-ng library. It keeps global state, so every call holds `lock`."""

    lock = threading.Lock()
    _instance: _Espeak | None = None

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise DependencyError("espeakng-loader", "all", "the espeak engine") from e
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path().encode()
        except (OSError, RuntimeError) as e:
            raise EngineError(f"cannot load the espeak-ng library: {e}") from e
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise EngineError("espeak-ng failed to initialise")
        self._chunks: list[np.ndarray] = []

        def on_audio(wav, n, events):  # called synchronously inside espeak_Synth
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = _CALLBACK(on_audio)  # keep a reference: ctypes callbacks must outlive the C side
        self.lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> _Espeak:
        with cls.lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def voices(self) -> list[str]:
        return sorted(self._languages())

    def _languages(self) -> dict[str, str]:
        """Language code (en-gb) -> voice identifier (gmw/en), from espeak_ListVoices (cached)."""
        cached = getattr(self, "_langs", None)
        if cached is not None:
            return cached
        with self.lock:
            arr = self.lib.espeak_ListVoices(None)
            out: dict[str, str] = {}
            i = 0
            while arr[i]:
                v = arr[i].contents
                # `languages` is a list of (priority byte, name, NUL); the first name is the code
                code = (v.languages or b"")[1:].split(b"\0")[0].decode(errors="replace")
                if code and v.identifier:
                    out.setdefault(code.lower(), v.identifier.decode(errors="replace"))
                i += 1
        self._langs = out
        return out

    def synth(self, text: str, voice: str, rate: int) -> np.ndarray:
        data = text.encode("utf-8")
        langs = self._languages()
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                # names match voice files ("en-us", "gmw/en"); a language code ("en-gb") maps to its file
                base, _, variant = voice.partition("+")
                ident = langs.get(base.lower())
                name = f"{ident}+{variant}" if ident and variant else ident
                if not name or self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                    raise InputError(f"unknown espeak-ng voice '{voice}'")
            self.lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)
            self._chunks = []
            err = self.lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, POS_CHARACTER, 0,
                                        ESPEAK_CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if err != 0:
            raise EngineError(f"espeak-ng synthesis failed (error {err})")
        if not chunks:
            raise InputError("the text has nothing to pronounce")
        return np.concatenate(chunks).astype(np.float32) / 32768.0


class EspeakEngine(SpeechEngine):
    name = "espeak"
    description = "espeak-ng formant synthesis (always available, robotic)"
    default_model = "en-us"
    license = "espeak-ng GPL-3.0 (library + data in the espeakng-loader wheel)"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            sample_rate=22050,
            max_text_chars=5000,
            batching=False,
            max_batch=1,
            voices=(self.model,),
            open_voices=True,  # any espeak-ng voice or variant, e.g. en-us+f3
            default_voice=self.model,
            devices=("cpu",),
            languages=(self.model.split("-")[0],),
        )

    def scripts_for(self, request: SynthesisRequest | None = None) -> tuple[str, ...] | None:
        """Those of the request's voice when it names another language (voice 'ru' reads Cyrillic)."""
        voice = (request.voice if request is not None else None) or self.model
        return text.scripts_for_language(voice.partition("+")[0].rsplit("/", 1)[-1])

    def list_voices(self) -> list[str]:
        """Every espeak-ng language voice (any takes a variant: en-us+f3)."""
        return _Espeak.get().voices()

    def estimate_bytes(self) -> int:
        return 8 * 2**20

    def setup(self, device: str = "cpu", dtype: str = "float32") -> None:
        self._lib = _Espeak.get()
        self.device, self.dtype, self.loaded = "cpu", "float32", True

    def _synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio]:
        out = []
        for r in requests:
            rate = int(min(450, max(80, DEFAULT_RATE * r.speed)))
            x = self._lib.synth(r.text, r.voice or self.model, rate)
            out.append(Audio(x, self._lib.sample_rate))
        return out

    @classmethod
    def catalog(cls) -> list[str]:
        return ["en-us", "en-gb", "en-us+f3"]

    @classmethod
    def status(cls, model: str) -> ModelStatus:
        try:
            import espeakng_loader  # noqa: F401

            ok = True
        except ImportError:
            ok = False
        return ModelStatus(f"{cls.name}:{model}", ok, None, "pip package espeakng-loader", cls.license)
