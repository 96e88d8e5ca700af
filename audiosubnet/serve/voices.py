"""Saved voices of `asn serve`: a reference clip and its transcript, stored under `$ASN_HOME/serve/voices/`.

    store = VoiceStore(home / "serve" / "voices")
    v = store.add(audio_bytes, text="What the clip says.", name="Grandpa")   # -> SavedVoice(id="voice_3f9c...")
    store.get(v.id).reference()     # the clip, decoded
    store.delete(v.id)

One folder per voice: `reference.wav` (the upload decoded, checked and re-encoded as 16-bit WAV: nothing of the
uploaded file's container is kept) and `voice.json`. Ids are random and validated on every lookup, so a
request can never name a path. Uploads come as bytes only (multipart or base64): no URL is ever fetched.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.errors import AudioDecodeError, InputError

ID_PREFIX = "voice_"
_ID = re.compile(r"^voice_[0-9a-f]{16}$")
MIN_SECONDS = 1.0
MAX_SECONDS = 30.0
MAX_TEXT_CHARS = 1000
MAX_NAME_CHARS = 64
REFS_KEPT = 32  # decoded references kept in memory (least recently used dropped first)


class VoiceNotFound(InputError):
    """No saved voice with that id."""


@dataclass(frozen=True)
class SavedVoice:
    id: str
    name: str
    text: str
    created_at: int
    duration_s: float
    sample_rate: int

    def public(self) -> dict[str, Any]:
        """What the API shows: OpenAI's `audio.voice` object (openai.types.audio.Voice) plus the clip's facts."""
        return {"id": self.id, "object": "audio.voice", "type": "audio_sample", "name": self.name,
                "created_at": self.created_at, "reference_text": self.text or None,
                "duration_s": round(self.duration_s, 3), "sample_rate": self.sample_rate}


def is_voice_id(value: str | None) -> TypeGuard[str]:
    return bool(value) and value is not None and bool(_ID.match(value))


class VoiceStore:
    def __init__(self, root: Path, max_voices: int = 1000):
        self.root = Path(root)
        self.max_voices = max_voices
        self._lock = threading.Lock()
        self._refs: OrderedDict[str, Audio] = OrderedDict()  # decoded references, the most recently used

    def _dir(self, voice_id: str) -> Path:
        if not is_voice_id(voice_id):
            raise VoiceNotFound(f"no saved voice '{voice_id[:80]}'")
        return self.root / voice_id

    def add(self, data: bytes, *, text: str | None = None, name: str | None = None) -> SavedVoice:
        """Decode, check and store a reference clip (its transcript helps some cloners; optional).
        Raises InputError/AudioDecodeError with a reason."""
        text = " ".join((text or "").split())
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"'text' is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        name = " ".join((name or "").split())[:MAX_NAME_CHARS]
        ref = audiolib.decode(data, max_seconds=MAX_SECONDS)
        if ref.duration < MIN_SECONDS:
            raise AudioDecodeError(f"the reference clip is {ref.duration:.2f} s; at least {MIN_SECONDS:g} s")
        if audiolib.rms_db(ref.samples) < -60:
            raise AudioDecodeError("the reference clip is silent")
        with self._lock:
            if self.max_voices and len(self.list()) >= self.max_voices:
                raise InputError(f"{self.max_voices} voices are saved already; delete one first")
            voice_id = ID_PREFIX + secrets.token_hex(8)
            folder = self.root / voice_id
            folder.mkdir(parents=True, exist_ok=False)
            v = SavedVoice(voice_id, name or voice_id, text, int(time.time()), ref.duration, ref.sample_rate)
            audiolib.write_atomic(folder / "reference.wav", audiolib.encode(ref, "wav"))
            audiolib.write_atomic(folder / "voice.json", json.dumps(asdict(v), ensure_ascii=False).encode())
        return v

    def get(self, voice_id: str) -> SavedVoice:
        meta = self._dir(voice_id) / "voice.json"
        try:
            return SavedVoice(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            raise VoiceNotFound(f"no saved voice '{voice_id}'") from None

    def reference(self, voice_id: str) -> Audio:
        with self._lock:
            ref = self._refs.get(voice_id)
            if ref is not None:
                self._refs.move_to_end(voice_id)
                return ref
        ref = audiolib.read(self._dir(voice_id) / "reference.wav")
        with self._lock:
            self._refs[voice_id] = ref
            while len(self._refs) > REFS_KEPT:
                self._refs.popitem(last=False)
        return ref

    def list(self) -> list[SavedVoice]:
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if is_voice_id(d.name):
                try:
                    out.append(self.get(d.name))
                except VoiceNotFound:
                    continue
        return sorted(out, key=lambda v: v.created_at)

    def delete(self, voice_id: str) -> bool:
        folder = self._dir(voice_id)
        with self._lock:
            self._refs.pop(voice_id, None)
            if not folder.is_dir():
                return False
            shutil.rmtree(folder)
        return True
