"""espeak-ng (formant synthesis) through the shared library of the `espeakng-loader` wheel.

Always available, tiny and fast; robotic. Model ids: `espeak:en-us`, `espeak:en-gb`, ... (any
espeak-ng voice); the request's `voice` may add a variant (`en-us+f3`) or name another voice.

Voice strings reach a C library that copies them into fixed buffers and opens files named after them, so
only what espeak-ng really offers is passed on: a language code, voice identifier or voice name that
`espeak_ListVoices` lists, optionally `+` one of the variant files of its data folder (`voices/!v`). Anything
else (unknown names, path separators, over-long or control characters) is an InputError, never a C call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from typing import Any

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
MAX_VOICE_CHARS = 64  # espeak-ng copies names into 40-byte buffers; every real voice or variant is far shorter

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
        self._variants = _variants(data.decode())

        def on_audio(wav: Any, n: int, events: Any) -> int:  # called synchronously inside espeak_Synth
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
        cached: dict[str, str] | None = getattr(self, "_langs", None)
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

    def _names(self) -> dict[str, str]:
        """Every accepted voice spelling (lower case) -> the voice file identifier espeak-ng is given."""
        cached: dict[str, str] | None = getattr(self, "_by_name", None)
        if cached is not None:
            return cached
        out = dict(self._languages())  # "en-gb" -> "gmw/en"
        with self.lock:
            arr = self.lib.espeak_ListVoices(None)
            i = 0
            while arr[i]:
                v = arr[i].contents
                if v.identifier:
                    ident = v.identifier.decode(errors="replace")
                    out.setdefault(ident.lower(), ident)  # "gmw/en-us"
                    out.setdefault(ident.rsplit("/", 1)[-1].lower(), ident)  # the file name: "en", "en-us"
                    if v.name:
                        out.setdefault(v.name.decode(errors="replace").lower(), ident)  # "english_(america)"
                    for code in _language_codes(v.languages):  # every language it speaks: "en-gb", "en"
                        out.setdefault(code, ident)
                i += 1
        self._by_name = out
        return out

    def resolve(self, voice: str) -> str:
        """The voice file (+ variant) espeak-ng is given for `voice`; InputError unless espeak-ng offers it."""
        shown = _shown(voice)
        if not isinstance(voice, str) or not voice or len(voice) > MAX_VOICE_CHARS or not voice.isprintable():
            raise InputError(f"unknown espeak-ng voice '{shown}'")
        base, plus, variant = voice.partition("+")
        ident = self._names().get(base.strip().lower())
        if ident is None:
            hint = " (a variant goes after a voice, e.g. en-us+f3)" if voice in self._variants else ""
            raise InputError(f"unknown espeak-ng voice '{shown}'{hint}")
        if not plus:
            return ident
        if variant not in self._variants:
            some = ", ".join(sorted(v for v in self._variants if len(v) <= 3)[:10])
            raise InputError(f"unknown espeak-ng voice variant '{_shown(variant)}' (variants: {some}, ...)")
        return f"{ident}+{variant}"

    def synth(self, text: str, voice: str, rate: int) -> np.ndarray:
        data = text.encode("utf-8", errors="replace")
        name = self.resolve(voice)
        with self.lock:
            if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise InputError(f"unknown espeak-ng voice '{_shown(voice)}'")
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


def _language_codes(raw: bytes | None) -> list[str]:
    """`espeak_VOICE.languages`: (priority byte, name, NUL) repeated, ended by a 0 priority byte."""
    out, i, data = [], 0, raw or b""
    while i < len(data) and data[i] != 0:
        end = data.find(b"\0", i + 1)
        if end < 0:
            break
        out.append(data[i + 1:end].decode(errors="replace").lower())
        i = end + 1
    return out


def _variants(data_path: str) -> frozenset[str]:
    """The variant names of the data folder (`voices/!v/<name>`)."""
    if not os.path.isdir(os.path.join(data_path, "voices")):  # the folder that holds espeak-ng-data
        data_path = os.path.join(data_path, "espeak-ng-data")
    try:
        return frozenset(n for n in os.listdir(os.path.join(data_path, "voices", "!v"))
                         if n.isprintable() and "+" not in n and len(n) <= MAX_VOICE_CHARS)
    except OSError:
        return frozenset()


def _shown(value: object) -> str:
    """A client-supplied name as it may appear in a message: printable, at most 40 characters."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 40 else text[:40] + "..."


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

    def check(self, request: SynthesisRequest) -> None:
        super().check(request)
        if self.loaded:
            self._lib.resolve(request.voice or self.model)

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
