"""How `asn tts batch` and `asn music batch` end: the summary (or its JSON), the failed rows, the exit status."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import typer

from audiosubnet.commands._cli import err, print_json, render_error

if TYPE_CHECKING:
    from audiosubnet.jobs.batch import BatchSummary


class _Row(Protocol):
    """What the failure report reads of a row result (the speech and music jobs' RowResult)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def error(self) -> str: ...


def finish_batch(summary: BatchSummary, stopped: Exception | None, *, json_out: bool, what: str) -> None:
    """Render a batch summary and exit: 0 every row done, 1 a row failed or the output stopped taking files,
    130 interrupted (finished rows are in the manifest). `what`: "audio" or "music", for the totals line."""
    if json_out:
        print_json(summary.to_dict())
    else:
        report_failures(summary.rows)
        rtf = summary.engine_seconds / summary.audio_seconds if summary.audio_seconds else 0.0
        err.print(
            f"{summary.ok} written, {summary.skipped} already done, {summary.failed} failed "
            f"of {summary.total} rows; {summary.audio_seconds:.1f} s of {what} in {summary.wall_seconds:.1f} s "
            f"(RTF {rtf:.3f}) -> {summary.manifest}", highlight=False)
    if summary.interrupted:
        err.print("interrupted: finished rows are in the manifest; rerun to resume")
        raise typer.Exit(130)
    if stopped is not None:
        raise typer.Exit(render_error(stopped))
    raise typer.Exit(1 if summary.failed else 0)


def report_failures(rows: Iterable[_Row]) -> None:
    """One line per failed row; an error shared by several rows (a model that cannot load, an unknown
    model) once, with how many rows it stopped."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r.status != "ok":
            groups.setdefault(r.error, []).append(r.id)
    for error, ids in groups.items():
        if len(ids) == 1:
            err.print(f"[red]✗[/] {ids[0]}: {error}", markup=True, highlight=False)
        else:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            err.print(f"[red]✗[/] {len(ids)} rows ({shown}): {error}", markup=True, highlight=False)
