"""`asn score`: score one clip against its text, or a folder of clips with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import err, interactive, out, print_json

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from audiosubnet.scoring.pipeline import ScoreResult


def score(
    path: Annotated[Path, typer.Argument(metavar="FILE|DIR", help="An audio file (with --text), or a folder "
                                         "with a manifest.csv (columns id,file,text[,reference]).")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="What FILE should say.",
                                             show_default=False)] = None,
    reference: Annotated[Path | None, typer.Option("--reference", "-r", help="Voice to imitate: scores FILE as "
                                                   "a clone task (adds speaker similarity).",
                                                   show_default=False)] = None,
    scores_out: Annotated[Path | None, typer.Option("--out", "-o", help="Scores CSV for a folder  "
                                                    "[default: DIR/scores.csv]", show_default=False)] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="auto | offline | gpu  [default: auto]",
                                               show_default=False)] = None,
    asr_model: Annotated[str | None, typer.Option("--asr-model", help="auto | tiny.en | fw:<...> | hf:<...>",
                                                  show_default=False)] = None,
    mos_models: Annotated[str | None, typer.Option("--mos", help="dnsmos,utmos  [default: auto]",
                                                   show_default=False)] = None,
    speaker_model: Annotated[str | None, typer.Option("--speaker-model", help="auto | dvector | ge2e | wavlm "
                                                      "| hf:<...>", show_default=False)] = None,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    json_out: o.JsonOpt = False,
    ray: o.RayOpt = False,
    ray_address: o.RayAddressOpt = None,
    ray_replicas: o.RayReplicasOpt = None,
) -> None:
    """Score speech: intelligibility (Whisper WER/CER), naturalness (DNSMOS, UTMOS), speaker similarity
    (with --reference), sanity and duplicate checks, and the composite in [0, 1].

    Examples:
      asn score say.wav --text "Hello from the subnet."
      asn score clone.wav --text "Hello." --reference speaker.wav --json
      asn score tts_target                      # every row of tts_target/manifest.csv -> scores.csv
      asn score /shared/renders --ray           # the same on a Ray cluster (docs/scale.md)

    Exit status: 0 when scored, 2 for bad input (missing file, undecodable audio, no manifest).
    """
    from audiosubnet.config import load_settings
    from audiosubnet.engines.registry import configure_cache
    from audiosubnet.errors import UsageError
    from audiosubnet.scoring import Scoring
    from audiosubnet.scoring.files import score_file, score_folder

    s = load_settings(**{"score.preset": preset, "score.asr_model": asr_model, "score.mos_models": mos_models,
                         "score.speaker_model": speaker_model, **o.placement_flags(device, dtype, cache_budget)})
    if not path.exists():
        raise UsageError(f"{path} does not exist", hint="Pass an audio file with --text, or a folder.")
    if path.is_dir() and (text is not None or reference is not None):
        raise UsageError("--text and --reference apply to one file, not a folder",
                         hint="A folder takes its texts from manifest.csv.")
    on_ray = ray or ray_address is not None
    if on_ray and not path.is_dir():
        raise UsageError("--ray scores a folder", hint="Score one file without --ray.")
    if path.is_file() and text is None:
        raise UsageError("--text is required when scoring one file", hint='asn score FILE --text "..."')
    scoring = Scoring(s.score, cache=configure_cache(s.device, s.dtype, s.cache_budget))
    if path.is_file():
        result = score_file(path, text or "", scoring, reference)
        if json_out:
            print_json(result.to_dict())
        else:
            _render(path, result)
        return
    with _Progress(interactive() and not json_out) as progress:
        if on_ray:
            from audiosubnet.jobs.ray_runner import RayOptions
            from audiosubnet.jobs.score_ray import score_folder_ray

            ray_opts = RayOptions(address=ray_address, replicas=ray_replicas, device=s.device, dtype=s.dtype)
            summary = score_folder_ray(path, scoring, scores_out, ray_opts, progress=progress.advance,
                                       on_rows=progress.start)
        else:
            summary = score_folder(path, scoring, scores_out, progress=progress.advance, on_rows=progress.start)
    if json_out:
        print_json(summary.to_dict())
    else:
        err.print(f"{len(summary.results)} scored ({summary.zeroed} scored 0, {summary.skipped} rows skipped); "
                  f"mean composite {summary.mean:.3f} -> {summary.scores_csv}", highlight=False)


def _render(path: Path, r: ScoreResult) -> None:
    from rich.table import Table

    t = Table(title=f"{path.name}", show_header=True, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in r.metrics.items():
        t.add_row(k, f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.4g}")
    t.add_row("[bold]composite[/]", f"[bold]{r.composite:.3f}[/]")
    out.print(t)
    if r.transcript is not None:
        out.print(f"transcript: {r.transcript}", highlight=False, markup=False)
    if r.reason:
        out.print(f"scored 0: {r.reason}", highlight=False, markup=False)
    out.print(f"[dim]scoring profile: {r.version}+{r.profile}[/]")


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("[bold]score[/]"), BarColumn(), MofNCompleteColumn(), console=err)
            self._bar.__enter__()
        return self

    def start(self, total: int) -> None:
        """The number of rows, known once the manifest is read."""
        if self._bar is not None:
            self._task = self._bar.add_task("score", total=total)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=n)
