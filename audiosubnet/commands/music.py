"""`asn music`: local text-to-music (MusicGen): one prompt, or a CSV of prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._batch import finish_batch
from audiosubnet.commands._cli import AsnTyper, err, interactive

app = AsnTyper(help="Local text-to-music: one prompt to a file, or a CSV of prompts to a folder.")

MusicModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Music model id  [default: musicgen:facebook/musicgen-small]", show_default=False)]


@app.command("gen")
def gen(
    prompt: Annotated[str, typer.Argument(help="What the music should sound like (at most 256 characters).")],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds of music (0.5-30).")] = 10.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.wav/.flac/.mp3/.ogg).")] = Path(
        "music.wav"),
    seed: Annotated[int | None, typer.Option("--seed", help="Same seed, same music.", show_default=False)] = None,
    model: MusicModelOpt = None,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
) -> None:
    """Make one clip of music from a text prompt.

    Examples:
      asn music gen "lo-fi beat with soft piano" -d 10 -o beat.wav
      asn music gen "epic orchestral score" -d 20 --seed 7 --model musicgen:facebook/musicgen-medium --device cuda
    """
    from audiosubnet import audio as audiolib
    from audiosubnet.config import load_settings
    from audiosubnet.engines.music import MusicRequest, music_engine_check
    from audiosubnet.engines.registry import configure_cache
    from audiosubnet.errors import UsageError
    from audiosubnet.jobs.music_batch import DEFAULT_MUSIC_MODEL

    fmt = out.suffix.lower().lstrip(".") or "wav"
    if fmt not in audiolib.FORMATS:
        raise UsageError(f"unknown audio format '.{fmt}'", hint="Use .wav, .flac, .mp3 or .ogg.")
    s = load_settings(**o.placement_flags(device, dtype, None))
    cache = configure_cache(s.device, s.dtype, s.cache_budget)
    with cache.engine(model or DEFAULT_MUSIC_MODEL) as engine:
        music_engine_check(engine)
        audio = engine.synthesize([MusicRequest(text=prompt, duration_s=duration, seed=seed)])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    audiolib.write_atomic(out, audiolib.encode(audio, fmt))
    err.print(f"{audio.duration:.2f} s at {audio.sample_rate} Hz -> {out}", highlight=False)


@app.command("batch")
def batch(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Prompts: a 'prompt' column (optional id, "
                                             "duration, seed, model), or one prompt per line.")] = Path(
        "music_source/prompts.csv"),
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (with --ray also an fsspec URL such as "
                                     "s3://bucket/prefix).")] = "music_target",
    fmt: Annotated[str, typer.Option("--format", "-f", help="wav | flac | mp3 | ogg")] = "wav",
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds for rows without a duration.")] = 10.0,
    model: MusicModelOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Regenerate rows that are already done.")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Rows per engine call.")] = 8,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    json_out: o.JsonOpt = False,
    ray: o.RayOpt = False,
    ray_address: o.RayAddressOpt = None,
    ray_replicas: o.RayReplicasOpt = None,
) -> None:
    """Render every row of CSV to an audio file plus a manifest.csv (resumable).

    Examples:
      asn music batch music_source/prompts.csv
      asn music batch prompts.csv --out renders --format flac --device cuda --max-batch 32
      asn music batch prompts.csv --ray --out s3://bucket/music    # on a Ray cluster (docs/scale.md)

    Exit status: 0 when every row succeeded, 1 when any row failed or the output folder stopped
    taking files (disk full), 2 for a missing, empty or non-text CSV or an unwritable output folder,
    130 on Ctrl-C (finished rows are in the manifest; rerun to resume).
    """
    from audiosubnet.commands.tts import _Progress
    from audiosubnet.config import load_settings
    from audiosubnet.engines.registry import configure_cache
    from audiosubnet.errors import UsageError
    from audiosubnet.jobs.batch import BatchInterrupted, BatchStopped
    from audiosubnet.jobs.music_batch import DEFAULT_MUSIC_MODEL, MusicBatchOptions, run_music_batch
    from audiosubnet.jobs.storage import is_url

    s = load_settings(**o.placement_flags(device, dtype, cache_budget))
    on_ray = ray or ray_address is not None
    if is_url(out) and not on_ray:
        raise UsageError(f"--out {out} is a URL; only the Ray job writes to object storage",
                         hint="Add --ray, or give a folder.")
    cache = None if on_ray else configure_cache(s.device, s.dtype, s.cache_budget)
    opts = MusicBatchOptions(out_dir=Path(out), fmt=fmt, model=model or DEFAULT_MUSIC_MODEL, duration_s=duration,
                             force=force, max_batch=max_batch)
    stopped = None
    with _Progress(enabled=interactive() and not json_out) as progress:
        try:
            if on_ray:
                from audiosubnet.jobs.music_batch import run_music_batch_ray
                from audiosubnet.jobs.ray_runner import RayOptions

                ray_opts = RayOptions(address=ray_address, replicas=ray_replicas, device=s.device, dtype=s.dtype)
                summary = run_music_batch_ray(csv_path, opts, ray_opts, out=out if is_url(out) else None,
                                              progress=progress.update, on_rows=progress.start)
            else:
                assert cache is not None  # made whenever the job runs here, not on Ray
                summary = run_music_batch(csv_path, opts, cache, progress=progress.update, on_rows=progress.start)
        except BatchInterrupted as e:
            summary = e.summary
        except BatchStopped as e:
            summary, stopped = e.summary, e
    finish_batch(summary, stopped, json_out=json_out, what="music")
