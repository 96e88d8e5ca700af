"""`asn tts`: local text-to-speech."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, err, interactive, print_json

app = AsnTyper(help="Local text-to-speech: a CSV of prompts to audio files, or one sentence.")


@app.command("batch")
def batch(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Prompts: a 'text' column (optional id, model, "
                                             "voice, speed), or one prompt per line.")] = Path(
        "tts_source/tts_prompts.csv"),
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder (with --ray also an fsspec URL "
                                               "such as s3://bucket/prefix)  [default: tts_target]",
                                               show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="wav | flac | mp3 | ogg  [default: wav]",
                                               show_default=False)] = None,
    model: o.ModelOpt = None,
    voice: o.VoiceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Regenerate rows that are already done.")] = False,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Rows per engine call for engines "
                                                     "that batch  [default: 16]", show_default=False)] = None,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    json_out: o.JsonOpt = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed the engines (per row, from this and the row "
                                             "id): the same CSV gives the same audio on any machine.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (pip install 'audiosubnet[ray]'): "
                                      "RAY_ADDRESS, else the cluster `ray start` left here, else a new local one."
                                      )] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", metavar="ADDRESS", help="The Ray cluster "
                                                    "(host:6379, ray://host:10001, local, auto); implies --ray.",
                                                    show_default=False)] = None,
    ray_replicas: Annotated[int | None, typer.Option("--ray-replicas", min=1, help="Engine actors  [default: "
                                                     "one per GPU, or one per CPU]", show_default=False)] = None,
) -> None:
    """Render every row of CSV to an audio file plus a manifest.csv (resumable).

    Examples:
      asn tts batch tts_source/tts_prompts.csv
      asn tts batch prompts.csv --out renders --format flac --model espeak:en-us
      asn tts batch prompts.csv --force --json
      asn tts batch prompts.csv --ray --out s3://bucket/renders --seed 1

    Exit status: 0 when every row succeeded, 1 when any row failed, 2 for a missing or empty CSV
    or an unwritable output folder.
    """
    from audiosubnet.config import load_settings
    from audiosubnet.engines.cache import configure_cache
    from audiosubnet.errors import UsageError
    from audiosubnet.jobs.tts_batch import BatchInterrupted, BatchOptions, run_tts_batch

    s = load_settings(**{"tts.out_dir": out, "tts.format": fmt, "tts.max_batch": max_batch, "model": model,
                         "voice": voice, **o.placement_flags(device, dtype, cache_budget)})
    cache = configure_cache(s.device, s.dtype, s.cache_budget)
    opts = BatchOptions(out_dir=s.tts.out_dir, fmt=s.tts.format, model=s.model, voice=s.voice, force=force,
                        max_batch=s.tts.max_batch, seed=seed)
    with _Progress(enabled=interactive() and not json_out) as progress:
        try:
            if ray or ray_address:
                from audiosubnet.jobs.storage import is_url
                from audiosubnet.jobs.tts_batch_ray import RayOptions, run_tts_batch_ray

                ray_opts = RayOptions(address=ray_address, replicas=ray_replicas, device=s.device, dtype=s.dtype)
                summary = run_tts_batch_ray(csv_path, opts, ray_opts, out=out if out and is_url(out) else None,
                                            progress=progress.update, on_rows=progress.start)
            else:
                if out and "://" in out and not out.startswith("file://"):
                    raise UsageError(f"--out {out} is a URL; only the Ray job writes to object storage",
                                     hint="Add --ray, or give a folder.")
                summary = run_tts_batch(csv_path, opts, cache, progress=progress.update, on_rows=progress.start)
        except BatchInterrupted as e:
            summary = e.summary
    if json_out:
        print_json(summary.to_dict())
    else:
        for r in summary.rows:
            if r.status != "ok":
                err.print(f"[red]✗[/] {r.id}: {r.error}", markup=True, highlight=False)
        rtf = summary.engine_seconds / summary.audio_seconds if summary.audio_seconds else 0.0
        err.print(
            f"{summary.ok} written, {summary.skipped} already done, {summary.failed} failed "
            f"of {summary.total} rows; {summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
            f"(RTF {rtf:.3f}) -> {summary.manifest}", highlight=False)
    if summary.interrupted:
        err.print("interrupted: manifest flushed; rerun to resume")
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.failed else 0)


@app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="Text to speak.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.wav/.flac/.mp3/.ogg).")] = Path("say.wav"),
    model: o.ModelOpt = None,
    voice: o.VoiceOpt = None,
    speed: Annotated[float, typer.Option("--speed", help="Speaking rate (0.25-4).")] = 1.0,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
) -> None:
    """Speak one text into one file.

    Example:
      asn tts say "Hello from the subnet." -o hello.wav --model espeak:en-us
    """
    from audiosubnet import audio as audiolib
    from audiosubnet.config import load_settings
    from audiosubnet.engines import longform
    from audiosubnet.engines.base import SynthesisRequest
    from audiosubnet.engines.cache import configure_cache
    from audiosubnet.errors import UsageError

    fmt = out.suffix.lower().lstrip(".") or "wav"
    if fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown audio format '.{fmt}'", hint="Use .wav, .flac, .mp3 or .ogg.")
    s = load_settings(model=model, voice=voice, **o.placement_flags(device, dtype, None))
    cache = configure_cache(s.device, s.dtype, s.cache_budget)
    with cache.engine(s.model) as engine:
        audio = longform.synthesize(engine, [SynthesisRequest(text=text, voice=s.voice, speed=speed)],
                                    max_batch=engine.capabilities.max_batch)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    audiolib.write_atomic(out, audiolib.encode(audio, fmt))
    err.print(f"{audio.duration:.2f} s at {audio.sample_rate} Hz -> {out}", highlight=False)


class _Progress:
    """A Rich progress bar with audio-seconds/s, or nothing off a terminal / under --json."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None
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

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("tts", total=total, speed="")

    def update(self, row) -> None:
        if self._bar is None or self._task is None:
            return
        if row.status == "ok" and not row.skipped:
            self._audio += float(row.duration_s or 0)
            self._engine += float(row.elapsed_s or 0)
        speed = f"{self._audio / self._engine:,.0f} audio-s/s" if self._engine else ""
        self._bar.update(self._task, advance=1, speed=speed)
