"""Audio encoders of `asn serve`, whole or incremental, for OpenAI's six response formats.

    enc = StreamEncoder("mp3", sample_rate=22050)
    first = enc.feed(sentence_1)      # bytes to send now (may be b"" while the codec fills a frame)
    more = enc.feed(sentence_2)
    tail = enc.finish()               # the codec's last frames and the container's trailer

- pcm: raw 16-bit little-endian mono at 24 kHz, as OpenAI defines it (resampled with soxr);
- wav: 16-bit mono; streamed with a header whose sizes say "unknown" (0xFFFFFFFF), as streaming WAV players
  expect; a whole response gets the exact sizes;
- flac: libsndfile (soundfile) for a whole response; PyAV when streamed;
- mp3 / opus (Ogg) / aac (ADTS): PyAV (FFmpeg, shipped in the `av` wheel), fed frame by frame, so each
  sentence's bytes go out as soon as it is encoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.errors import DependencyError

if TYPE_CHECKING:
    import av
    import av.container

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
PCM_RATE = 24000
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# (container, codec) for the formats PyAV encodes
_AV = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"), "flac": ("flac", "flac")}


def output_rate(fmt: str, sample_rate: int) -> int:
    """The sample rate a format is sent at, for audio made at `sample_rate`."""
    if fmt == "pcm":
        return PCM_RATE
    if fmt == "opus" and sample_rate not in _OPUS_RATES:
        return 48000 if sample_rate > 24000 else 24000
    if fmt == "mp3" and sample_rate not in _MP3_RATES:
        return 24000
    return sample_rate


def _pcm16(x: np.ndarray) -> bytes:
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
    return np.clip(np.floor(x.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A mono 16-bit WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16) +
            b"data" + struct.pack("<I", 0xFFFFFFFF))


class _Sink:
    """A write-only file for PyAV: collects what the muxer writes; `take()` hands it over."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


@dataclass
class _AvState:
    """An open PyAV encoder: the muxer writing into `sink`, its one audio stream, the resampler feeding it."""

    sink: _Sink
    container: av.container.OutputContainer
    stream: av.AudioStream
    resampler: av.AudioResampler


class StreamEncoder:
    """Encode a sequence of clips (one per sentence) into one stream of `fmt`, chunk by chunk."""

    def __init__(self, fmt: str, sample_rate: int):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt = fmt
        self.source_rate = sample_rate
        self.rate = output_rate(fmt, sample_rate)
        self._started = False
        self._av: _AvState | None = None
        self._pts = 0

    def _prepare(self, a: Audio) -> np.ndarray:
        if a.sample_rate != self.rate:
            a = audiolib.resample(a, self.rate)
        out: np.ndarray = np.clip(np.nan_to_num(a.samples, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        return out.astype(np.float32)

    def feed(self, a: Audio) -> bytes:
        x = self._prepare(a)
        if self.fmt == "pcm":
            return _pcm16(x)
        if self.fmt == "wav":
            head = b"" if self._started else wav_stream_header(self.rate)
            self._started = True
            return head + _pcm16(x)
        return self._av_feed(x)

    def finish(self) -> bytes:
        if self.fmt in ("pcm", "wav"):
            return b"" if self._started or self.fmt == "pcm" else wav_stream_header(self.rate)
        return self._av_finish(self._av or self._open())

    # ---- PyAV --------------------------------------------------------------------------------
    def _open(self) -> _AvState:
        try:
            import av
        except ImportError as e:
            raise DependencyError("av", "serve", f"{self.fmt} encoding") from e
        container_fmt, codec = _AV[self.fmt]
        sink = _Sink()
        # Ogg: pages of at most 50 ms (the default second would hold a sentence back until the next one)
        options = {"page_duration": "50000"} if container_fmt == "ogg" else {}
        container = av.open(sink, mode="w", format=container_fmt, options=options)
        stream = container.add_stream(codec, rate=self.rate)
        assert isinstance(stream, av.AudioStream)  # every codec in _AV is an audio codec
        stream.layout = "mono"
        if self.fmt in ("mp3", "aac"):
            stream.bit_rate = 64000 if self.rate <= 24000 else 128000
        elif self.fmt == "opus":
            stream.bit_rate = 32000
        cc = stream.codec_context
        resampler = av.AudioResampler(format=cc.format.name, layout="mono", rate=self.rate,
                                      frame_size=cc.frame_size or None)
        self._av = _AvState(sink, container, stream, resampler)
        self._started = True
        return self._av

    def _av_feed(self, x: np.ndarray) -> bytes:
        import av

        state = self._av or self._open()
        if x.size:
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += x.size
            self._encode(state, state.resampler.resample(frame))
        return state.sink.take()

    @staticmethod
    def _encode(state: _AvState, frames: list[av.AudioFrame]) -> None:
        for f in frames:
            for packet in state.stream.encode(f):
                state.container.mux(packet)

    def _av_finish(self, state: _AvState) -> bytes:
        self._encode(state, state.resampler.resample(None))  # what the resampler still holds (a short last frame)
        for packet in state.stream.encode(None):
            state.container.mux(packet)
        state.container.close()
        return state.sink.take()


def encode_whole(a: Audio, fmt: str) -> tuple[bytes, int]:
    """One clip, one file: (bytes, sample rate sent). wav/flac with exact sizes (libsndfile for flac)."""
    rate = output_rate(fmt, a.sample_rate)
    if fmt == "wav":
        b = a if a.sample_rate == rate else audiolib.resample(a, rate)
        return audiolib.encode(b, "wav"), rate
    if fmt == "flac":
        b = a if a.sample_rate == rate else audiolib.resample(a, rate)
        return audiolib.encode(b, "flac"), rate
    enc = StreamEncoder(fmt, a.sample_rate)
    return enc.feed(a) + enc.finish(), rate


def decode_any(data: bytes) -> Audio:
    """Decode any of the six formats (tests, the benchmark): PyAV for what libsndfile cannot read."""
    try:
        return audiolib.decode(data)
    except Exception:
        pass
    import av

    with av.open(io.BytesIO(data), mode="r") as c:
        resampler = av.AudioResampler(format="flt", layout="mono")
        parts, rate = [], None
        for frame in c.decode(audio=0):
            rate = frame.sample_rate
            for f in resampler.resample(frame):
                parts.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            parts.append(f.to_ndarray().reshape(-1))
    if not parts or rate is None:
        raise ValueError("no audio decoded")
    return Audio(np.concatenate(parts).astype(np.float32), int(rate))
