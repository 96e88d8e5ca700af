"""Rendering of `asn bench` results: Rich tables, JSON, CSV, a PNG chart, a markdown table for
docs/benchmarks.md, and the deltas against a previous run. Measures nothing (see runner.py).

    from audiosubnet.bench import report
    report.render(result, console)                    # Rich tables
    paths = report.write_all(result, out_dir)         # bench.json, bench.csv, bench.png, bench.md
    deltas = report.compare(result, report.load(previous_json))
    report.render_compare(deltas, console)
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiosubnet.bench.results import BenchResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from rich.console import Console

ENGINE_COLUMNS = ("label", "model_id", "kind", "weights", "device", "dtype", "batch", "status", "reason", "seconds",
                  "audio_s", "per_item_s", "rtf", "x_realtime", "reps", "peak_mb", "cold_load_s", "warm_load_s",
                  "first_audio_s", "weights_mb", "build_s", "anchor_x", "pct_of_anchor", "meets_target",
                  "vs_old_subnet", "wer", "cer", "mos", "speaker_sim", "composite", "quality_note", "notes")
SCORER_COLUMNS = ("name", "model", "weights", "device", "dtype", "batch", "status", "reason", "seconds", "audio_s",
                  "clips_per_s", "x_realtime", "reps", "peak_mb", "load_s", "anchor_x", "pct_of_anchor",
                  "meets_target", "vs_old_subnet", "stages_s", "notes")
CSV_COLUMNS = ("section", *dict.fromkeys(ENGINE_COLUMNS + SCORER_COLUMNS))

# (metric, higher is better) compared between runs
ENGINE_POINT_METRICS = (("x_realtime", True), ("peak_mb", False))
ENGINE_METRICS = (("cold_load_s", False), ("first_audio_s", False), ("wer", False), ("mos", True),
                  ("speaker_sim", True), ("composite", True))
SCORER_POINT_METRICS = (("clips_per_s", True), ("peak_mb", False))


# ---- flat rows --------------------------------------------------------------------------------------
def engine_rows(result: BenchResult) -> list[dict[str, Any]]:
    """One row per engine and batch size (one row without a batch for an engine with no points)."""
    rows = []
    for e in result.engines:
        q = e.quality or {}
        base = {"label": e.label, "model_id": e.model_id, "kind": e.kind, "weights": e.weights, "device": e.device,
                "dtype": e.dtype, "status": e.status, "reason": e.reason, "cold_load_s": e.cold_load_s,
                "warm_load_s": e.warm_load_s, "first_audio_s": e.first_audio_s, "weights_mb": e.weights_mb,
                "build_s": e.build_s, "quality_note": e.quality_note, "notes": "; ".join(e.notes) or None,
                **{k: q.get(k) for k in ("wer", "cer", "mos", "speaker_sim", "composite")}}
        if not e.points:
            rows.append({**base, "batch": None})
        for p in e.points:
            rows.append({**base, "batch": p.batch, "seconds": p.seconds, "audio_s": p.audio_s,
                         "per_item_s": p.per_item_s, "rtf": p.rtf, "x_realtime": p.x_realtime, "reps": p.reps,
                         "peak_mb": p.peak_mb, "anchor_x": p.anchor_x, "pct_of_anchor": p.pct_of_anchor,
                         "meets_target": p.meets_target, "vs_old_subnet": p.vs_old_subnet,
                         "reason": p.error or e.reason})
    return rows


def scorer_rows(result: BenchResult) -> list[dict[str, Any]]:
    rows = []
    for s in result.scorers:
        base: dict[str, Any] = {
            "name": s.name, "model": s.model, "weights": s.weights, "device": s.device, "dtype": s.dtype,
            "status": s.status, "reason": s.reason, "load_s": s.load_s, "notes": "; ".join(s.notes) or None}
        if not s.points:
            rows.append({**base, "batch": None})
        for p in s.points:
            rows.append({**base, "batch": p.batch, "seconds": p.seconds, "audio_s": p.audio_s,
                         "clips_per_s": p.clips_per_s, "x_realtime": p.x_realtime, "reps": p.reps,
                         "peak_mb": p.peak_mb, "anchor_x": p.anchor_x, "pct_of_anchor": p.pct_of_anchor,
                         "meets_target": p.meets_target, "vs_old_subnet": p.vs_old_subnet,
                         "stages_s": p.stages_s, "reason": p.error or s.reason})
    return rows


def _has(rows: Iterable[dict[str, Any]], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


# ---- number formatting --------------------------------------------------------------------------------
def fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if not isinstance(v, float):
        return str(v)
    if kind == "pct":
        return f"{v:.0f}%"
    if kind == "x":
        return f"{v:,.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"
    if kind == "ms":
        return f"{1000 * v:.1f}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.4f}"
    return f"{v:.2e}" if a else "0"


def _note(r: dict[str, Any]) -> str:
    parts = []
    if r.get("status") not in (None, "ok"):
        parts.append(r["status"])
    if r.get("reason"):
        parts.append(str(r["reason"]))
    text = ": ".join(parts)
    return text if len(text) <= 90 else text[:87] + "..."


# ---- Rich -------------------------------------------------------------------------------------------
def render(result: BenchResult, console: Console, *, deltas: list[dict[str, Any]] | None = None) -> None:
    """Tables (engines: loads and quality; engines per batch size; scorers), then problems and notes,
    then the deltas when given."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    env = result.env
    console.print(f"[bold]asn bench[/] on {env.get('device_name', '?')} ({env.get('device', '?')}), "
                  f"torch {env.get('torch', '-')}, transformers {env.get('transformers', '-')}, "
                  f"{env.get('cpu_count', '?')} CPUs, commit {str(env.get('git_commit') or '-')[:10]}"
                  + (" [yellow](interrupted: partial results)[/]" if result.interrupted else ""))
    if result.engines:
        t = Table(title="engines (quality: fixed prompts through the scoring package)", title_justify="left")
        for name in ("engine", "device/dtype", "status", "cold load s", "warm load ms", "first audio s",
                     "weights MiB", "WER", "MOS", "similarity", "composite"):
            t.add_column(name, justify="left" if name in ("engine", "device/dtype", "status") else "right")
        for e in result.engines:
            q = e.quality or {}
            status = e.status if e.status == "ok" else f"[{'yellow' if e.status == 'skipped' else 'red'}]{e.status}[/]"
            t.add_row(escape(e.label), f"{e.device}/{e.dtype}", status, fmt(e.cold_load_s), fmt(e.warm_load_s, "ms"),
                      fmt(e.first_audio_s), fmt(e.weights_mb), fmt(q.get("wer")), fmt(q.get("mos")),
                      fmt(q.get("speaker_sim")), fmt(q.get("composite")))
        console.print(t)
    rows = [r for r in engine_rows(result) if r.get("batch") is not None]
    if rows:
        anchors = _has(rows, "anchor_x")
        t = Table(title="engines per batch size (items of about "
                        f"{result.config.get('duration', '?')} s of speech)", title_justify="left")
        for name in ("engine", "dtype", "batch", "s/call", "RTF", "x real time", "audio s/item", "peak MiB"):
            t.add_column(name, justify="left" if name in ("engine", "dtype") else "right")
        if anchors:
            t.add_column("anchor", justify="right")
            t.add_column("% anchor", justify="right")
        t.add_column("vs old", justify="right")
        for r in rows:
            pct = fmt(r.get("pct_of_anchor"), "pct")
            if r.get("meets_target") is False:
                pct = f"[red]{pct}[/]"
            failed = r.get("reason") and r.get("rtf") is None
            cells = [escape(r["label"]), r["dtype"], fmt(r.get("batch")), fmt(r.get("seconds")),
                     "[red]failed[/]" if failed else fmt(r.get("rtf")), fmt(r.get("x_realtime"), "x"),
                     fmt(r.get("per_item_s")), fmt(r.get("peak_mb"))]
            if anchors:
                cells += [fmt(r.get("anchor_x"), "x"), pct]
            t.add_row(*cells, fmt(r.get("vs_old_subnet"), "x"))
        console.print(t)
    srows = scorer_rows(result)
    if srows:
        anchors = _has(srows, "anchor_x")
        clip = next((sc.clip_s for sc in result.scorers if sc.clip_s), result.config.get("duration"))
        t = Table(title=f"scorers (clips of {fmt(clip)} s on average)", title_justify="left")
        for name in ("scorer", "device/dtype", "batch", "s/batch", "clips/s", "x real time", "peak MiB"):
            t.add_column(name, justify="left" if name in ("scorer", "device/dtype") else "right")
        if anchors:
            t.add_column("% anchor", justify="right")
        t.add_column("vs old", justify="right")
        t.add_column("model")
        for r in srows:
            if r.get("batch") is None:
                cells = [r["name"], f"{r['device']}/{r['dtype']}", "-", f"[red]{r['status']}[/]", "-", "-", "-"]
            else:
                cells = [r["name"], f"{r['device']}/{r['dtype']}", fmt(r.get("batch")), fmt(r.get("seconds")),
                         fmt(r.get("clips_per_s")), fmt(r.get("x_realtime"), "x"), fmt(r.get("peak_mb"))]
            if anchors:
                cells.append(fmt(r.get("pct_of_anchor"), "pct"))
            model = escape(str(r.get("model") or "-")) + (" (random)" if str(r.get("weights")).startswith("random")
                                                          else "")
            t.add_row(*cells, fmt(r.get("vs_old_subnet"), "x"), model)
        console.print(t)
    for what, why in problems(result):
        console.print(Text.assemble((what, "red"), " ", str(why)), highlight=False)
    for line in notes(result):
        console.print(line, style="dim", highlight=False, markup=False)
    if deltas is not None:
        render_compare(deltas, console)


def problems(result: BenchResult) -> list[tuple[str, str]]:
    """(what, why) for every engine or scorer that did not run, and every batch size that failed."""
    out = []
    for e in result.engines:
        if e.status not in ("ok", "skipped") and e.reason:
            out.append((f"{e.label} [{e.dtype}] {e.status}:", e.reason))
        out += [(f"{e.label} [{e.dtype}] batch {p.batch} failed:", p.error) for p in e.points if p.error]
    for s in result.scorers:
        if s.status != "ok" and s.reason:
            out.append((f"scorer {s.name} {s.status}:", s.reason))
        out += [(f"scorer {s.name} batch {p.batch} failed:", p.error) for p in s.points if p.error]
    return out


def notes(result: BenchResult) -> list[str]:
    lines = [f"note: {e.label}: {n}" for e in result.engines for n in e.notes]
    lines += [f"note: {e.label} [{e.dtype}]: {e.reason}" for e in result.engines if e.status == "skipped"]
    qn = {e.quality_note for e in result.engines if e.quality_note and e.status == "ok"}
    lines += [f"note: quality {n}" for n in sorted(qn)]
    lines += [f"note: {e.label}: quality: {e.quality['first_reason']}" for e in result.engines
              if e.quality and e.quality.get("first_reason")]
    lines += [f"note: scorer {s.name}: {n}" for s in result.scorers for n in s.notes]
    lines += [f"note: scorer {s.name} batch {p.batch} seconds per stage: "
              + ", ".join(f"{k} {v:.3f}" for k, v in p.stages_s.items())
              for s in result.scorers for p in s.points if p.stages_s]
    return list(dict.fromkeys(lines))


# ---- JSON / CSV -------------------------------------------------------------------------------------
def to_json(result: BenchResult, deltas: list[dict[str, Any]] | None = None) -> str:
    data = result.to_dict()
    if deltas is not None:
        data["compare"] = deltas
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def load(path: str | Path) -> BenchResult:
    """A previous bench.json (raises ValueError when it is not one)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "engines" not in data:
        raise ValueError(f"{path} is not an asn bench JSON file")
    return BenchResult.from_dict(data)


def write_csv(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for section, rows in (("engine", engine_rows(result)), ("scorer", scorer_rows(result))):
            for r in rows:
                w.writerow({k: _csv_value(v) for k, v in {"section": section, **r}.items()})
    return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


# ---- PNG --------------------------------------------------------------------------------------------
def write_png(result: BenchResult, path: str | Path) -> Path:
    """RTF and throughput (x real time) per engine over batch size; scorer clips/s when measured."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    series = {}
    for e in result.engines:
        pts = [p for p in e.points if p.rtf]
        if pts:
            series[f"{e.label} {e.dtype}"] = pts
    scorers = {s.name: [p for p in s.points if p.clips_per_s] for s in result.scorers}
    scorers = {k: v for k, v in scorers.items() if v}
    panels = 2 + bool(scorers)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    axes = axes[0]
    for label, pts in series.items():
        xs = [p.batch for p in pts]
        axes[0].plot(xs, [p.rtf for p in pts], marker="o", label=label)
        axes[1].plot(xs, [p.x_realtime for p in pts], marker="o", label=label)
    axes[0].set(title="RTF (compute s per audio s, lower is better)", xlabel="batch size", ylabel="RTF")
    axes[1].set(title="throughput (audio s per s = x real time)", xlabel="batch size", ylabel="x real time")
    batches = sorted({p.batch for pts in [*series.values(), *scorers.values()] for p in pts})
    for ax in axes[:2]:
        _log_axes(ax, bool(series), batches)
    if series:
        axes[1].legend(fontsize=7, loc="best")
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no engine measured", ha="center", va="center", transform=ax.transAxes)
    if scorers:
        for name, pts in scorers.items():
            axes[2].plot([p.batch for p in pts], [p.clips_per_s for p in pts], marker="s", label=name)
        axes[2].set(title="scorers (clips per s)", xlabel="batch size", ylabel="clips/s")
        _log_axes(axes[2], True, batches)
        axes[2].legend(fontsize=7, loc="best")
    env = result.env
    fig.suptitle(f"asn bench - {env.get('device_name', '?')} ({env.get('device', '?')}), "
                 f"{result.config.get('duration', '?')} s items", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _log_axes(ax: Axes, data: bool, batches: list[int] | None = None) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if data:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        if batches:
            ax.set_xticks(batches)
    ax.grid(True, which="both", alpha=0.3)


# ---- markdown ---------------------------------------------------------------------------------------
def markdown(result: BenchResult) -> str:
    """Tables ready for docs/benchmarks.md, with the command and the environment that made them."""
    env, cfg = result.env, result.config
    lines = [f"### {env.get('device_name', '?')} ({env.get('device', '?')}), {result.started[:10]}", ""]
    if cfg.get("command"):
        lines += [f"`{cfg['command']}`", ""]
    lines += [f"torch {env.get('torch', '-')}, transformers {env.get('transformers', '-')}, python "
              f"{env.get('python', '-')}, {env.get('cpu_count', '?')} CPUs ({env.get('cpu', '?')}), commit "
              f"{str(env.get('git_commit') or '-')[:10]}{' (dirty)' if env.get('git_dirty') else ''}; "
              f"items of {cfg.get('duration', '?')} s; medians within {cfg.get('budget_s', '?')} s per point."
              + (" **Interrupted: partial results.**" if result.interrupted else ""), ""]
    rows = engine_rows(result)
    if rows:
        anchors = _has(rows, "anchor_x")
        head = ["engine", "weights", "device/dtype", "batch", "RTF", "x real time", "peak MiB", "cold load s",
                "first audio s"] + (["% of H100 anchor"] if anchors else []) + ["vs old subnet", "note"]
        lines += _md_table(head, [
            [r["label"], r["weights"], f"{r['device']}/{r['dtype']}", fmt(r.get("batch")), fmt(r.get("rtf")),
             fmt(r.get("x_realtime"), "x"), fmt(r.get("peak_mb")), fmt(r.get("cold_load_s")),
             fmt(r.get("first_audio_s"))] + ([fmt(r.get("pct_of_anchor"), "pct")] if anchors else [])
            + [fmt(r.get("vs_old_subnet"), "x"), _note(r)] for r in rows])
        qrows = [[e.label, fmt((e.quality or {}).get("wer")), fmt((e.quality or {}).get("mos")),
                  fmt((e.quality or {}).get("speaker_sim")), fmt((e.quality or {}).get("composite")),
                  e.quality_note or ""] for e in result.engines if e.status != "skipped"]
        lines += ["", "Quality on the fixed prompts (asn scoring):", ""]
        lines += _md_table(["engine", "WER", "MOS", "speaker similarity", "composite", "note"], qrows)
    srows = scorer_rows(result)
    if srows:
        anchors = _has(srows, "anchor_x")
        head = ["scorer", "model", "device/dtype", "batch", "s per batch", "clips/s", "x real time", "peak MiB"] \
            + (["% of H100 anchor"] if anchors else []) + ["vs old subnet", "note"]
        clip = next((sc.clip_s for sc in result.scorers if sc.clip_s), cfg.get("duration"))
        lines += ["", f"Scorers on clips of {fmt(clip)} s on average:", ""]
        lines += _md_table(head, [
            [r["name"], str(r.get("model") or "-"), f"{r['device']}/{r['dtype']}", fmt(r.get("batch")),
             fmt(r.get("seconds")), fmt(r.get("clips_per_s")), fmt(r.get("x_realtime"), "x"), fmt(r.get("peak_mb"))]
            + ([fmt(r.get("pct_of_anchor"), "pct")] if anchors else [])
            + [fmt(r.get("vs_old_subnet"), "x"), _note(r)] for r in srows])
    return "\n".join(lines) + "\n"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


# ---- compare ----------------------------------------------------------------------------------------
def compare(current: BenchResult, previous: BenchResult) -> list[dict[str, Any]]:
    """Each metric measured in both runs for the same engine/scorer, device, dtype and batch:
    {section, name, device, dtype, batch, metric, before, after, change_pct, better}."""
    out = []

    def index(result: BenchResult) -> dict[tuple[str, str, str, str, int | None], dict[str, Any]]:
        idx: dict[tuple[str, str, str, str, int | None], dict[str, Any]] = {}
        for e in result.engines:
            key = ("engine", e.label, e.device, e.dtype)
            idx[(*key, None)] = {m: getattr(e, m, None) if m in ("cold_load_s", "first_audio_s")
                                 else (e.quality or {}).get(m) for m, _ in ENGINE_METRICS}
            for p in e.points:
                idx[(*key, p.batch)] = {m: getattr(p, m) for m, _ in ENGINE_POINT_METRICS}
        for s in result.scorers:
            for p in s.points:
                idx[("scorer", s.name, s.device, s.dtype, p.batch)] = {m: getattr(p, m) for m, _ in
                                                                       SCORER_POINT_METRICS}
        return idx

    higher = dict(ENGINE_POINT_METRICS + ENGINE_METRICS + SCORER_POINT_METRICS)
    before_idx = index(previous)
    for key, metrics in index(current).items():
        old = before_idx.get(key)
        if old is None:
            continue
        for m, after in metrics.items():
            before = old.get(m)
            if not isinstance(after, int | float) or not isinstance(before, int | float):
                continue
            change = 100.0 * (after - before) / abs(before) if before else None
            better = None if change is None or after == before else (after > before) == higher[m]
            out.append({"section": key[0], "name": key[1], "device": key[2], "dtype": key[3], "batch": key[4],
                        "metric": m, "before": before, "after": after, "change_pct": change, "better": better})
    return out


def render_compare(deltas: list[dict[str, Any]], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not deltas:
        console.print("compare: nothing in common with the previous run (other engines, dtypes or batch sizes)")
        return
    t = Table(title="compared with the previous run", title_justify="left")
    for name in ("what", "device/dtype", "batch", "metric", "before", "after", "change"):
        t.add_column(name, justify="left" if name in ("what", "device/dtype", "metric") else "right")
    for d in deltas:
        ch = d["change_pct"]
        text = "-" if ch is None else f"{ch:+.1f}%"
        if ch is not None and abs(ch) >= 2 and d["better"] is not None:
            text = f"[{'green' if d['better'] else 'red'}]{text}[/]"
        t.add_row(escape(str(d["name"])), f"{d['device']}/{d['dtype']}", fmt(d["batch"]), d["metric"], fmt(d["before"]),
                  fmt(d["after"]), text)
    console.print(t)


# ---- all files --------------------------------------------------------------------------------------
def write_all(result: BenchResult, out_dir: str | Path, deltas: list[dict[str, Any]] | None = None,
              stem: str = "bench") -> dict[str, Path]:
    """STEM.json, STEM.csv, STEM.png (when matplotlib is installed) and STEM.md in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
    paths["json"].write_text(to_json(result, deltas), encoding="utf-8")
    write_csv(result, paths["csv"])
    paths["md"].write_text(markdown(result), encoding="utf-8")
    with contextlib.suppress(ImportError):  # without the `bench` extra: everything but the chart
        paths["png"] = write_png(result, out / f"{stem}.png")
    return paths
