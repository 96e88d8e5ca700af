"""`asn score DIR --ray [ADDRESS]`: a folder's clips scored by an actor pool of scorers on a Ray cluster.

The same output as `score_folder` (`scoring/files.py`): the same rows, batches, scores and scores CSV. The
driver reads the manifest and cuts the rows into the local run's batches; each scorer actor (one per GPU,
or one per CPU: `jobs/ray_runner.py`, the runner the batch jobs share) reads its batch's files from the
folder, which every node must see, and runs the checks and the models on them (`Scoring.measure`); it sends
back the measurements, not the audio. The copy checks (which compare a clip with the clips of every earlier
batch) and the composite run in the driver, batch after batch in the local order (`Scoring.settle`), so a
copy is found whichever actor measured it. Ray is imported only when this runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from audiosubnet.jobs.ray_runner import PoolActor, RayOptions, cluster, import_ray, run_on_pool
from audiosubnet.scoring.files import FolderRow, FolderSummary, chunks, finish_folder, read_chunk, start_folder
from audiosubnet.scoring.pipeline import Scoring

WHAT = "asn score --ray"


class _Scorer(PoolActor):
    """A scorer replica: its own Scoring (the driver's settings and scorers, its own models) measures a batch."""

    def setup(self) -> None:
        from audiosubnet.engines.registry import configure_cache

        c = self.config
        self.scoring = Scoring(c["settings"], cache=configure_cache(c["device"], c["dtype"], "auto"),
                               scorers=c["scorers"])

    def handle(self, task: tuple[int, list[FolderRow]]) -> dict[str, Any]:
        index, chunk = task
        items, pos, results = read_chunk(Path(self.config["folder"]), chunk, self.scoring)
        return {"index": index, "pos": pos, "results": results, "work": self.scoring.measure(items),
                "plan": self.scoring.plan, "profile": self.scoring.profile}


def score_folder_ray(folder: Path, scoring: Scoring, out: Path | None = None, ray_opts: RayOptions | None = None,
                     progress: Callable[[int], None] | None = None,
                     on_rows: Callable[[int], None] | None = None) -> FolderSummary:
    """Score every row of `folder/manifest.csv` on Ray; write the scores CSV atomically. `scoring` gives the
    settings and scorers for the actors, and keeps the copy history, as in the local run."""
    import_ray(WHAT)
    ray_opts = ray_opts or RayOptions()
    rows, summary = start_folder(folder, out, on_rows)
    batches = chunks(rows)
    waiting: dict[int, dict[str, Any]] = {}  # measured batches that came back before an earlier one
    settled = 0
    with cluster(ray_opts.address, WHAT) as ray:
        def make_actor(device: str) -> type:
            return _Scorer.configured(settings=scoring.settings, scorers=scoring.custom, folder=str(folder),
                                      device=device, dtype=ray_opts.dtype)

        for done in run_on_pool(ray, list(enumerate(batches)), make_actor, ray_opts,
                                hint="Fix the cause and run the same command again."):
            if progress:
                progress(len(batches[done["index"]]))
            waiting[done["index"]] = done
            while settled in waiting:  # the copy checks go batch after batch, in the local order
                _settle(scoring, summary, batches[settled], waiting.pop(settled))
                settled += 1
    return finish_folder(summary)


def _settle(scoring: Scoring, summary: FolderSummary, chunk: list[FolderRow], done: dict[str, Any]) -> None:
    # the replicas' models decide the profile (a driver without a GPU would plan the CPU stack)
    scoring.plan, scoring.profile = done["plan"], done["profile"]
    results = done["results"]
    for i, r in zip(done["pos"], scoring.settle(done["work"]), strict=True):
        results[i] = r
    summary.results.extend(zip(chunk, results, strict=True))
