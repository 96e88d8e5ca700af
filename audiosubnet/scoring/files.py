"""Scoring files on disk: one clip (`asn score FILE --text ...`) or a folder with a manifest
(`asn score DIR`, e.g. the output of `asn tts batch`) into a scores CSV.

Manifest: `manifest.csv` with at least `file` and `text` columns (`id` optional; `status` rows other
than `ok` are skipped; an optional `reference` column makes a row a clone task, path relative to
the folder). Rows are scored in batches through one `Scoring` (so duplicates across rows are
found); a missing or unreadable file gives that row a reason, never an abort.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosubnet import audio as audiolib
from audiosubnet.audio import Audio
from audiosubnet.errors import AsnError, UsageError
from audiosubnet.scoring.base import ScoreItem
from audiosubnet.scoring.pipeline import ScoreResult, Scoring
from audiosubnet.scoring.sanity import clean_message

MANIFEST = "manifest.csv"
SCORES = "scores.csv"
METRIC_COLUMNS = ("wer", "cer", "intelligibility", "mos", "naturalness", "utmos", "dnsmos_ovrl", "dnsmos_sig",
                  "dnsmos_bak", "dnsmos_p808", "speaker_sim", "similarity", "duration_s", "sample_rate")
BATCH = 16


def _audio_hint(message: str, max_seconds: float) -> str:
    """The next step for audio that cannot be scored: too long is not a format problem."""
    if "long; the limit" in message:
        return (f"Clips are scored up to {max_seconds:g} s: cut it (e.g. sox in.wav out.wav trim 0 {max_seconds:g}), "
                f"or raise the limit with ASN_SCORE__MAX_SECONDS.")
    return "Use a WAV, FLAC, MP3 or OGG file."


def read_reference(path: Path, max_seconds: float = 60.0) -> Audio:
    if not path.is_file():
        raise UsageError(f"reference file {path} does not exist", hint="Pass an audio file with --reference.")
    try:
        return audiolib.read(path, max_seconds=max_seconds)
    except AsnError as e:
        raise UsageError(f"reference {path}: {clean_message(str(e))}", hint=_audio_hint(str(e), max_seconds)) from e


def score_file(path: Path, text: str, scoring: Scoring, reference: Path | None = None) -> ScoreResult:
    """Score one audio file against its text (a clone task when `reference` is given)."""
    if not text or not text.strip():
        raise UsageError("--text is empty", hint='Pass the words the clip should say: --text "..."')
    if path.is_dir():
        raise UsageError(f"{path} is a folder; --text applies to one file",
                         hint="Score a folder without --text (it needs a manifest.csv).")
    if not path.is_file():
        raise UsageError(f"audio file {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        audiolib.decode(data, max_seconds=scoring.settings.max_seconds)
    except AsnError as e:
        raise UsageError(f"{path}: {clean_message(str(e))}", hint=_audio_hint(str(e), scoring.settings.max_seconds)) \
            from e
    ref = read_reference(reference, scoring.settings.max_seconds) if reference else None
    item = ScoreItem(text=text, audio=data, task="clone" if ref is not None else "tts", reference=ref,
                     id=path.name)
    return scoring.score([item], remember=False)[0]


@dataclass
class FolderRow:
    id: str
    file: str
    text: str
    reference: str = ""


@dataclass
class FolderSummary:
    scores_csv: Path
    results: list[tuple[FolderRow, ScoreResult]] = field(default_factory=list)
    skipped: int = 0

    @property
    def mean(self) -> float:
        vals = [r.composite for _, r in self.results]
        return sum(vals) / len(vals) if vals else 0.0

    @property
    def zeroed(self) -> int:
        return sum(1 for _, r in self.results if r.reason)

    def to_dict(self) -> dict[str, Any]:
        return {"scores_csv": str(self.scores_csv), "scored": len(self.results), "skipped": self.skipped,
                "mean_composite": round(self.mean, 6), "zeroed": self.zeroed,
                "results": [dict(r.to_dict(), id=row.id, file=row.file) for row, r in self.results]}


def read_manifest(folder: Path) -> tuple[list[FolderRow], int]:
    """Rows to score and the number skipped (status not ok). File-level problems raise UsageError."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(f"{folder} has no {MANIFEST}",
                         hint="Score one file with: asn score FILE --text \"...\", or make a manifest "
                              "(columns id,file,text) e.g. with `asn tts batch`.")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    reader = csv.DictReader(io.StringIO(raw, newline=""))
    cols = {c.strip().lower() for c in (reader.fieldnames or [])}
    if not {"file", "text"} <= cols:
        raise UsageError(f"{path} needs 'file' and 'text' columns (has: {', '.join(sorted(cols)) or 'none'})")
    rows, skipped = [], 0
    try:
        for n, rec in enumerate(reader, start=1):
            rec = {(k or "").strip().lower(): (v or "").strip() for k, v in rec.items() if isinstance(v, str)}
            if rec.get("status", "ok") not in ("", "ok"):
                skipped += 1
                continue
            rows.append(FolderRow(rec.get("id") or f"{n:04d}", rec.get("file", ""), rec.get("text", ""),
                                  rec.get("reference", "")))
    except csv.Error as e:
        raise UsageError(f"{path}: {e}") from e
    if not rows:
        raise UsageError(f"{path} has no rows to score")
    return rows, skipped


def _item(folder: Path, row: FolderRow, max_seconds: float) -> tuple[ScoreItem | None, str | None]:
    if not row.file:
        return None, "no file in the manifest row"
    p = folder / row.file
    try:
        data = p.read_bytes()
    except OSError as e:
        return None, f"cannot read {row.file}: {e.strerror or e}"
    ref = None
    if row.reference:
        try:
            ref = audiolib.read(folder / row.reference, max_seconds=max_seconds)
        except AsnError as e:
            return None, f"reference {row.reference}: {clean_message(str(e))}"
    return ScoreItem(text=row.text, audio=data, task="clone" if ref is not None else "tts", reference=ref,
                     id=row.id), None


def score_folder(folder: Path, scoring: Scoring, out: Path | None = None,
                 progress: Callable[[int], None] | None = None,
                 on_rows: Callable[[int], None] | None = None) -> FolderSummary:
    """Score every row of `folder/manifest.csv`; write the scores CSV atomically."""
    rows, summary = start_folder(folder, out, on_rows)
    for chunk in chunks(rows):
        items, pos, results = read_chunk(folder, chunk, scoring)
        for i, r in zip(pos, scoring.score(items), strict=True):
            results[i] = r
        summary.results.extend(zip(chunk, results, strict=True))  # type: ignore[arg-type]
        if progress:
            progress(len(chunk))
    return finish_folder(summary)


def start_folder(folder: Path, out: Path | None, on_rows: Callable[[int], None] | None
                 ) -> tuple[list[FolderRow], FolderSummary]:
    """The rows of `folder`'s manifest and an empty summary; file-level problems raise UsageError."""
    rows, skipped = read_manifest(folder)
    if on_rows:
        on_rows(len(rows))
    out = out or folder / SCORES
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"output folder {out.parent} does not exist")
    return rows, FolderSummary(out, skipped=skipped)


def chunks(rows: list[FolderRow]) -> list[list[FolderRow]]:
    """The scoring batches, in order (the copy checks depend on it)."""
    return [rows[start:start + BATCH] for start in range(0, len(rows), BATCH)]


def read_chunk(folder: Path, chunk: list[FolderRow], scoring: Scoring
               ) -> tuple[list[ScoreItem], list[int], list[ScoreResult | None]]:
    """A batch's items to score, their positions in the batch, and the results of rows that cannot be scored
    (a missing or unreadable file: a reason, never an abort)."""
    items: list[ScoreItem] = []
    pos: list[int] = []
    results: list[ScoreResult | None] = [None] * len(chunk)
    for i, row in enumerate(chunk):
        item, problem = _item(folder, row, scoring.settings.max_seconds)
        if item is None:
            results[i] = ScoreResult(0.0, reason=problem, id=row.id, version=scoring.version.split("+")[0],
                                     profile=scoring.profile)
        else:
            items.append(item)
            pos.append(i)
    return items, pos, results


def finish_folder(summary: FolderSummary) -> FolderSummary:
    """Write the scores CSV (atomically)."""
    try:
        write_scores(summary.scores_csv, summary.results)
    except OSError as e:
        raise UsageError(f"cannot write {summary.scores_csv}: {e.strerror or e}",
                         hint="Choose another file with --out, or fix the folder's permissions.") from e
    return summary


def write_scores(path: Path, results: list[tuple[FolderRow, ScoreResult]]) -> None:
    buf = io.StringIO()
    fields = ["id", "file", "composite", "reason", *METRIC_COLUMNS, "transcript", "version", "profile", "text"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row, r in results:
        rec = {"id": row.id, "file": row.file, "composite": f"{r.composite:.4f}", "reason": r.reason or "",
               "transcript": r.transcript or "", "version": r.version, "profile": r.profile, "text": row.text}
        for m in METRIC_COLUMNS:
            v = r.metrics.get(m)
            rec[m] = "" if v is None else f"{v:.4f}"
        w.writerow(rec)
    audiolib.write_atomic(path, buf.getvalue().encode("utf-8"))
