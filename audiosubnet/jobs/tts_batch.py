"""`asn tts batch`: a CSV of prompts -> one audio file per row + a manifest.

Pure logic: the CLI passes paths, options and a progress callback; the engines come from the
process EngineCache. The job core (`jobs/batch.py`, shared with `asn music batch` and the Ray runner)
gives the guarantees:
- bad rows get a manifest row with status `error` and a reason; the rest continues;
- outputs are written atomically (temp + rename), so an interrupted run never leaves a truncated
  file under a final name; each finished row is appended to the manifest at once (Ctrl-C or a kill
  loses none), and the manifest is rewritten in CSV order at the end;
- a full disk (or a quota, a read-only or failing folder) stops the batch with one error;
- a rerun skips rows whose output exists and matches the manifest (same text, model, voice,
  format and size); `force` regenerates.
This module adds what is speech's own: the prompts CSV (`jobs/prompts_csv.py`), voices and speeds,
long texts spoken in pieces (`engines/longform.py`), `allow_mixed`, and per-row seeds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from audiosubnet.audio import Audio
from audiosubnet.config import Settings, TtsSettings, defaults
from audiosubnet.engines import longform
from audiosubnet.engines import text as textlib
from audiosubnet.engines.base import EngineSource, SpeechEngine, SynthesisRequest
from audiosubnet.jobs import batch as core

# Re-exported (`X as X`): the job's public names.
from audiosubnet.jobs.batch import MANIFEST_NAME as MANIFEST_NAME
from audiosubnet.jobs.batch import BatchInterrupted as BatchInterrupted
from audiosubnet.jobs.batch import BatchStopped as BatchStopped
from audiosubnet.jobs.batch import BatchSummary as BatchSummary
from audiosubnet.jobs.batch import OutputError as OutputError
from audiosubnet.jobs.batch import check_writable as check_writable
from audiosubnet.jobs.batch import read_manifest as read_manifest
from audiosubnet.jobs.prompts_csv import PromptRow, parse_prompts
from audiosubnet.jobs.prompts_csv import read_prompts as read_prompts
from audiosubnet.jobs.storage import OutputStore

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["id", "file", "model", "voice", "sample_rate", "duration_s", "elapsed_s", "status", "error",
                   "text_sha1", "bytes", "text"]


@dataclass
class RowResult(core.JobResult):
    id: str
    file: str = ""
    model: str = ""
    voice: str = ""
    sample_rate: int | str = ""
    duration_s: float | str = ""
    elapsed_s: float | str = ""
    status: str = "error"  # ok | error
    error: str = ""
    text_sha1: str = ""
    bytes: int | str = ""
    text: str = ""
    skipped: bool = field(default=False, compare=False)


_TTS = defaults(TtsSettings)  # one source of defaults: the settings section


@dataclass
class BatchOptions:
    """The job's view of the `tts` settings section (and the top-level model); its defaults are theirs."""

    out_dir: Path = _TTS["out_dir"]
    fmt: str = _TTS["format"]
    model: str = defaults(Settings)["model"]
    voice: str | None = None
    force: bool = False
    max_batch: int = _TTS["max_batch"]
    allow_mixed: bool = False  # letters the engine cannot read: dropped with a warning, not a row error
    seed: int | None = None  # set: each row's noise comes from (seed, id), the same audio on any machine


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    core.write_manifest(path, rows, MANIFEST_FIELDS)


def row_seed(seed: int | None, row_id: str) -> int | None:
    """The row's seed: derived from the job's seed and the row id, so it does not depend on which worker,
    batch or order renders the row. None (no job seed) keeps the engine's fresh noise."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha1(f"{seed}:{row_id}".encode()).digest()[:8], "big") & (2**62 - 1)


class TtsJob(core.ManifestJob):
    """The speech job on the shared core: requests with voice, speed, seed; long texts in pieces."""

    FIELDS = MANIFEST_FIELDS

    def fingerprint(self, row: PromptRow, model: str) -> dict[str, str]:
        return {"model": model, "voice": row.voice or self.opts.voice or "", "text_sha1": core.sha1(row.text)}

    def request(self, engine: SpeechEngine, row: PromptRow) -> SynthesisRequest:
        req = SynthesisRequest(text=row.text, voice=row.voice or self.opts.voice, speed=row.speed,
                               seed=row_seed(self.opts.seed, row.id))
        req = self.mixed(engine, row, req)
        longform.check(engine, req)  # a text over the engine's limit is spoken in pieces
        return req

    def mixed(self, engine: SpeechEngine, row: PromptRow, req: SynthesisRequest) -> SynthesisRequest:
        """With `allow_mixed`, letters the engine cannot read are dropped, with a warning."""
        if not self.opts.allow_mixed:
            return req
        kept, dropped = textlib.drop_unreadable(req.text, engine.scripts_for(req))
        if not dropped:
            return req
        log.warning("%s: dropped %s that %s cannot read", row.id, textlib.describe(dropped), engine.model_id)
        return replace(req, text=kept)

    def synthesize_iter(self, engine: SpeechEngine, requests: list[SynthesisRequest]) -> Iterator[tuple[int, Audio]]:
        return longform.synthesize_iter(engine, requests)

    def ok_result(self, row: PromptRow, req: SynthesisRequest, model: str, audio: Audio, name: str, size: int,
                  took: float) -> RowResult:
        return RowResult(id=row.id, file=name, model=model, voice=req.voice or "", sample_rate=audio.sample_rate,
                         duration_s=round(audio.duration, 3), elapsed_s=round(took, 4), status="ok",
                         text_sha1=core.sha1(row.text), bytes=size, text=row.text)

    def error_result(self, row: PromptRow, model: str, error: str) -> RowResult:
        voice = (row.voice or self.opts.voice or "") if model else ""
        return RowResult(row.id, model=model, voice=voice, status="error", error=error, text=row.text)

    def skipped_result(self, prev: dict[str, str]) -> RowResult:
        return RowResult(**prev, skipped=True)


def load_rows(source: Path | bytes) -> list[PromptRow]:
    """The rows of a prompts file, or of CSV bytes (stdin's)."""
    return parse_prompts(source, "the prompts on stdin") if isinstance(source, bytes) else read_prompts(source)


def run_tts_batch(csv_path: Path | bytes, opts: BatchOptions, cache: EngineSource,
                  progress: Callable[[RowResult], None] | None = None,
                  on_rows: Callable[[int], None] | None = None, store: OutputStore | None = None) -> BatchSummary:
    """Render every row of `csv_path` (or of CSV bytes, e.g. stdin's) into `opts.out_dir` (or `store`).

    Raises UsageError for file-level problems; BatchInterrupted (Ctrl-C) and BatchStopped (the
    output folder stopped taking files) carry the summary of what was done, all of it in the manifest.
    """
    core.check_format(opts.fmt)
    rows = load_rows(csv_path)
    store = store or OutputStore(opts.out_dir)
    store.check_writable()
    if on_rows:
        on_rows(len(rows))
    return core.run_job(TtsJob(rows, opts, cache, progress, store))
