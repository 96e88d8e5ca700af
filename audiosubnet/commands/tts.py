"""`asn tts`: local text-to-speech."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._batch import finish_batch
from audiosubnet.commands._cli import AsnTyper, err, interactive, print_json

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from audiosubnet.engines.isolated import IsolatedCache
    from audiosubnet.engines.pool import EnginePool
    from audiosubnet.jobs.music_batch import MusicRowResult
    from audiosubnet.jobs.tts_batch import RowResult


app = AsnTyper(help="Local text-to-speech: a CSV of prompts to audio files, or one sentence.")


AllowMixedOpt = Annotated[bool, typer.Option(
    "--allow-mixed", help="Drop (with a warning) letters in scripts the model cannot read, instead of "
    "refusing the text (e.g. a Chinese name in an English sentence).")]


@app.command("batch")
def batch(
    csv_path: Annotated[str, typer.Argument(metavar="CSV", help="Prompts: a 'text' column (optional id, model, "
                                            "voice, speed; ',', ';', tab or '|' separated), or one prompt per "
                                            "line; '-' reads standard input.")] = "tts_source/tts_prompts.csv",
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder (with --ray also an fsspec URL "
                                               "such as s3://bucket/prefix)  [default: tts_target]",
                                               show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="wav | flac | mp3 | ogg  [default: wav]",
                                               show_default=False)] = None,
    model: o.ModelOpt = None,
    voice: o.VoiceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Regenerate rows that are already done.")] = False,
    allow_mixed: AllowMixedOpt = False,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Rows per engine call for engines "
                                                     "that batch  [default: 16]", show_default=False)] = None,
    device: o.DeviceOpt = None,
    devices: o.DevicesOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    json_out: o.JsonOpt = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed the engines (per row, from this and the row "
                                             "id): the same CSV gives the same audio on any machine.")] = None,
    ray: o.RayOpt = False,
    ray_address: o.RayAddressOpt = None,
    ray_replicas: o.RayReplicasOpt = None,
) -> None:
    """Render every row of CSV to an audio file plus a manifest.csv (resumable).

    Examples:
      asn tts batch tts_source/tts_prompts.csv
      asn tts batch prompts.csv --out renders --format flac --model espeak:en-us
      printf 'text\\nHello.\\nGoodbye.\\n' | asn tts batch - --out renders --json
      asn tts batch prompts.csv --ray --out s3://bucket/renders --seed 1
      asn tts batch prompts.csv --devices all --model hf:facebook/mms-tts-eng   (batches spread over every GPU)

    Exit status: 0 when every row succeeded, 1 when any row failed or the output folder stopped
    taking files (disk full), 2 for a missing, empty or non-text CSV or an unwritable output folder,
    130 on Ctrl-C (finished rows are in the manifest; rerun to resume).
    """
    from audiosubnet.config import load_settings
    from audiosubnet.engines.isolated import isolated_cache
    from audiosubnet.errors import UsageError
    from audiosubnet.jobs.tts_batch import BatchInterrupted, BatchOptions, BatchStopped, run_tts_batch

    source: Path | bytes = Path(csv_path)
    if csv_path == "-":
        source = sys.stdin.buffer.read()
    s = load_settings(**{"tts.out_dir": out, "tts.format": fmt, "tts.max_batch": max_batch, "model": model,
                         "voice": voice, "devices": devices, **o.placement_flags(device, dtype, cache_budget)})
    # the engine runs in its own process: a row that crashes it (native code) fails alone, the batch goes on;
    # with --devices, one such process per device, and that many batches at once
    if s.devices:
        from audiosubnet.engines.pool import engine_pool, parse_devices

        cache: EnginePool | IsolatedCache = engine_pool(parse_devices(s.devices, s.device), s.dtype, s.cache_budget)
    else:
        cache = isolated_cache(s.device, s.dtype, s.cache_budget)
    opts = BatchOptions(out_dir=s.tts.out_dir, fmt=s.tts.format, model=s.model, voice=s.voice, force=force,
                        max_batch=s.tts.max_batch, allow_mixed=allow_mixed, seed=seed)
    stopped = None
    with _Progress(enabled=interactive() and not json_out) as progress:
        try:
            if ray or ray_address:
                from audiosubnet.jobs.storage import is_url
                from audiosubnet.jobs.tts_batch_ray import RayOptions, run_tts_batch_ray

                ray_opts = RayOptions(address=ray_address, replicas=ray_replicas, device=s.device, dtype=s.dtype)
                summary = run_tts_batch_ray(source, opts, ray_opts, out=out if out and is_url(out) else None,
                                            progress=progress.update, on_rows=progress.start)
            else:
                if out and "://" in out and not out.startswith("file://"):
                    raise UsageError(f"--out {out} is a URL; only the Ray job writes to object storage",
                                     hint="Add --ray, or give a folder.")
                summary = run_tts_batch(source, opts, cache, progress=progress.update, on_rows=progress.start)
        except BatchInterrupted as e:
            summary = e.summary
        except BatchStopped as e:
            summary, stopped = e.summary, e
        finally:
            cache.close()
    finish_batch(summary, stopped, json_out=json_out, what="audio")


@app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="Text to speak; '-' reads it from standard input.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output file (.wav/.flac/.mp3/.ogg); '-' writes the "
                                     "audio to standard output (WAV unless --format).")] = "say.wav",
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="wav | flac | mp3 | ogg  [default: from the "
                                            "file name; wav for '-']", show_default=False)] = None,
    model: o.ModelOpt = None,
    voice: o.VoiceOpt = None,
    speed: Annotated[float, typer.Option("--speed", help="Speaking rate (0.25-4).")] = 1.0,
    allow_mixed: AllowMixedOpt = False,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Speak one text into one file (or to standard output).

    Examples:
      asn tts say "Hello from the subnet." -o hello.wav --model espeak:en-us
      echo "Hello from a pipe." | asn tts say - -o - | aplay
    """
    from audiosubnet import audio as audiolib
    from audiosubnet.config import load_settings
    from audiosubnet.engines import longform, registry
    from audiosubnet.engines import text as textlib
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.registry import configure_cache
    from audiosubnet.errors import InputError, ModelNotDownloadedError, UsageError

    to_stdout = out == "-"
    path = None if to_stdout else Path(out)
    fmt = (fmt or ("wav" if path is None else path.suffix.lower().lstrip(".") or "wav")).lower()
    if fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown audio format '{fmt}'", hint="Use .wav, .flac, .mp3 or .ogg (or --format).")
    if to_stdout and json_out:
        raise UsageError("--json and -o - both want standard output", hint="Write the audio to a file with -o.")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write audio to a terminal", hint="Pipe it (| aplay) or redirect it (> x.wav).")
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the text is empty", hint='Pass the words to speak: asn tts say "Hello." -o hello.wav')
    if not 0.25 <= speed <= 4.0:
        raise UsageError(f"--speed {speed:g} is outside 0.25-4", hint="1 is normal; 2 is twice as fast.")
    if path is not None:
        _check_output_file(path)
    s = load_settings(model=model, voice=voice, **o.placement_flags(device, dtype, None))
    req = SynthesisRequest(text=text, voice=s.voice, speed=speed)
    engine = registry.create(s.model)  # cheap: no weights; what the model declares (small files at most)
    try:
        kept, dropped = textlib.drop_unreadable(text, engine.scripts_for(req)) if allow_mixed else (text, None)
        if dropped:
            err.print(f"warning: dropped {textlib.describe(dropped)} that {engine.model_id} cannot read",
                      highlight=False)
            req = replace(req, text=kept)
        longform.check(engine, req)  # before the model loads: the text, the voice, the speed (any length)
    except InputError as e:
        raise UsageError(str(e), hint=e.hint or ("Add --allow-mixed to drop what it cannot read."
                                                 if "cannot read" in str(e) else None)) from e
    except ModelNotDownloadedError:
        pass  # its declarations come with it: loading downloads it (online) or says how to
    cache = configure_cache(s.device, s.dtype, s.cache_budget)
    with cache.engine(s.model) as loaded:
        audio = longform.synthesize(loaded, [req], max_batch=loaded.capabilities.max_batch)[0]
    data = audiolib.encode(audio, fmt)
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        err.print(f"{audio.duration:.2f} s at {audio.sample_rate} Hz -> standard output", highlight=False)
        return
    try:
        audiolib.write_atomic(path, data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}",
                         hint="Choose another file with -o, or fix the folder's permissions.") from e
    if json_out:
        print_json({"file": str(path), "model": loaded.model_id, "duration_s": round(audio.duration, 3),
                    "sample_rate": audio.sample_rate, "bytes": len(data), "format": fmt})
    else:
        err.print(f"{audio.duration:.2f} s at {audio.sample_rate} Hz -> {path}", highlight=False)


def _check_output_file(path: Path) -> None:
    """Fail before loading a model when the output file cannot be written."""
    from audiosubnet.errors import UsageError

    hint = "Choose another file with -o, or fix the folder's permissions."
    if path.is_dir():
        raise UsageError(f"{path} is a folder", hint="Pass a file name with -o, e.g. -o hello.wav.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the folder {path.parent}: {e.strerror or e}", hint=hint) from e
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: the folder {path.parent} is not writable", hint=hint)


class _Progress:
    """A Rich progress bar with audio-seconds/s, or nothing off a terminal / under --json."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._audio = 0.0
        self._engine = 0.0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]tts[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=err,
                                 transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("tts", total=total, speed="")

    def update(self, row: RowResult | MusicRowResult) -> None:
        if self._bar is None or self._task is None:
            return
        if row.status == "ok" and not row.skipped:
            self._audio += float(row.duration_s or 0)
            self._engine += float(row.elapsed_s or 0)
        speed = f"{self._audio / self._engine:,.0f} audio-s/s" if self._engine else ""
        self._bar.update(self._task, advance=1, speed=speed)
