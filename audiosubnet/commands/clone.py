"""`asn clone`: voice cloning from folders."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, err, interactive, print_json

if TYPE_CHECKING:
    from rich.status import Status

    from audiosubnet.jobs.clone_watch import WatchOptions


app = AsnTyper(help="Voice cloning: speak a text in the voice of a reference recording.")


SourceOpt = Annotated[Path | None, typer.Option(
    "--source", help="Folder to watch for <name>.wav + <name>.txt pairs  [default: vc_source]", show_default=False)]
TargetOpt = Annotated[Path | None, typer.Option(
    "--target", help="Where the cloned speech is written  [default: vc_target]", show_default=False)]
ProcessedOpt = Annotated[Path | None, typer.Option(
    "--processed", help="Where finished inputs are moved  [default: vc_processed]", show_default=False)]
FailedOpt = Annotated[Path | None, typer.Option(
    "--failed", help="Where bad inputs are moved, with <name>.error.txt  [default: vc_failed]", show_default=False)]


@app.command("watch")
def watch(
    source: SourceOpt = None,
    target: TargetOpt = None,
    processed: ProcessedOpt = None,
    failed: FailedOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Process what is there now and exit (for cron); exit 1 "
                                       "if any pair failed.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", "--engine", "-m", help="Clone model: auto (pocket if downloaded, else the offline world "
        "fallback), world, world:espeak:en-us, pocket, speecht5-clone  [default: auto]",
        show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="wav | flac | mp3 | ogg  [default: wav]",
                                            show_default=False)] = None,
    settle: Annotated[float | None, typer.Option(
        "--settle", help="Seconds a file must stay unchanged before it counts as complete  [default: 2]",
        show_default=False)] = None,
    orphan_timeout: Annotated[float | None, typer.Option(
        "--orphan-timeout", help="Seconds a file may wait for its partner before it goes to the failed folder  "
        "[default: 600]", show_default=False)] = None,
    poll: Annotated[bool, typer.Option("--poll", help="Poll the folder instead of using file events "
                                       "(network filesystems).")] = False,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Pairs per engine call  [default: 8]",
                                                  show_default=False)] = None,
    device: o.DeviceOpt = None,
    dtype: o.DTypeOpt = None,
    cache_budget: o.BudgetOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Watch a folder and clone voices: <name>.wav (the voice) + <name>.txt (the words) -> target/<name>.wav.

    Both files must be complete (unchanged for --settle seconds). Inputs then move to the processed
    folder; bad ones (undecodable or silent audio, audio shorter than 1 s or longer than 60 s, empty,
    huge or non-UTF-8 text, a file whose partner never came) move to the failed folder with
    <name>.error.txt. Safe to kill at any moment: a restart finishes the job exactly once.

    Examples:
      asn clone watch
      asn clone watch --once --model world            # cron: one pass with the offline fallback
      asn clone watch --source in --target out --processed done --failed bad

    Exit status: 0 done (or stopped with Ctrl-C / SIGTERM), 1 when --once saw a pair fail,
    2 for a bad flag or folder.
    """
    from audiosubnet.config import load_settings
    from audiosubnet.engines.isolated import isolated_cache
    from audiosubnet.jobs.clone_watch import CloneWatcher, WatchOptions, resolve_clone_model

    s = load_settings(**{"clone.source": source, "clone.target": target, "clone.processed": processed,
                         "clone.failed": failed, "clone.model": model, "clone.format": fmt,
                         "clone.settle_s": settle, "clone.orphan_timeout_s": orphan_timeout,
                         "clone.max_batch": max_batch, **o.placement_flags(device, dtype, cache_budget)})
    c = s.clone
    opts = WatchOptions.of(c, model=resolve_clone_model(c.model), use_watchdog=not poll)
    # the engine runs in its own process: a pair that crashes it (native code) fails alone, the watch goes on
    cache = isolated_cache(s.device, s.dtype, s.cache_budget)
    status = _Status(enabled=interactive() and not json_out, opts=opts, once=once)
    stop = threading.Event()
    with contextlib.closing(cache), CloneWatcher(opts, cache, on_event=status.event) as watcher, status:
        if once:
            summary = watcher.run_once()
        else:
            _stop_on_sigterm(stop)
            try:
                summary = watcher.run(stop)
            except KeyboardInterrupt:
                summary = watcher.summary
    if json_out:
        print_json(summary.to_dict())
    elif once or not status.enabled:
        err.print(f"{summary.ok} cloned, {summary.failed} failed"
                  + (f", {summary.recovered} recovered after a crash" if summary.recovered else "")
                  + (f", {watcher.waiting} file(s) still arriving, left for the next run"
                     if once and watcher.waiting else "")
                  + f" -> {opts.target}", highlight=False)
    raise typer.Exit(1 if once and summary.failed else 0)


def _stop_on_sigterm(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())


class _Status:
    """A Rich status line with counts and one line per pair on a terminal; quiet otherwise."""

    def __init__(self, enabled: bool, opts: WatchOptions, once: bool):
        self.enabled = enabled
        self.opts = opts
        self.once = once
        self._status: Status | None = None
        self.ok = self.failed = 0

    def __enter__(self) -> _Status:
        if self.enabled:
            self._status = err.status(self._text(0))
            self._status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def _text(self, waiting: int) -> str:
        what = "cloning" if self.once else f"watching {self.opts.source}"
        return (f"[bold]{what}[/] with {self.opts.model}: {self.ok} done, {self.failed} failed"
                + (f", {waiting} file(s) settling" if waiting else "") + "  [dim](Ctrl-C stops)[/]")

    def event(self, kind: str, data: Any) -> None:  # a pair's result, or the watcher itself (`CloneWatcher.on_event`)
        if kind == "ok":
            self.ok += 1
            if self.enabled:
                err.print(f"[green]✓[/] {data.stem} -> {data.output} ({data.audio_s:.1f} s)", markup=True,
                          highlight=False)
        elif kind == "failed":
            self.failed += 1
            # failures are worth a line even off a terminal
            err.print(f"[red]✗[/] {data.stem}: {data.reason}", markup=True, highlight=False)
        if self._status is not None:
            self._status.update(self._text(getattr(data, "waiting", 0)))
