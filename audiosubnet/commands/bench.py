"""`asn bench`: throughput, latency, memory and quality of the speech engines and scorers."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import err, out


def _list(value: str | None) -> list[str] | None:
    """A comma list; `none` is the empty list. A piece like `load_s=0.5` (no ':') continues the model id
    before it: options in a model name (fake:sr=22050,max_batch=4) keep their commas."""
    if value is None:
        return None
    items: list[str] = []
    for v in (v.strip() for v in value.split(",")):
        if v and "=" in v and ":" not in v and items:
            items[-1] += "," + v
        elif v:
            items.append(v)
    return [] if items in ([], ["none"]) else items


def bench(
    engines: Annotated[str | None, typer.Option("--engines", "-e", help="Comma list of model ids, or none  "
                                                "[default: piper,espeak,world; with --random-weights: mms,"
                                                "speecht5,bark,speecht5-clone,pocket,musicgen]",
                                                show_default=False)] = None,
    scorers: Annotated[str | None, typer.Option("--scorers", "-s", help="Comma list of asr, dnsmos, utmos, "
                                                "speaker, pipeline, pipeline-clone, music, or none  [default: "
                                                "asr,dnsmos,speaker,pipeline; + utmos with --random-weights]",
                                                show_default=False)] = None,
    device: o.DeviceOpt = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="Comma list of float32, float16, bfloat16, auto; "
                                              "one row per dtype (scorers run in the first half precision)  "
                                              "[default: auto]", show_default=False)] = None,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", "-b", help="Comma list of batch sizes.")] = "1,8,32",
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds of speech per item and per "
                                            "scored clip.")] = 30.0,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Write bench.json, bench.csv, bench.png "
                                                 "and bench.md here.", show_default=False)] = None,
    previous: Annotated[Path | None, typer.Option("--compare", help="A previous bench.json: print the deltas.",
                                                  show_default=False)] = None,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Full-size architectures with "
                                                 "random weights where weights cannot be downloaded (timing "
                                                 "only: quality is skipped).")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", help="With random weights: tiny configs (a check in "
                                       "seconds on a CPU). Implies --random-weights.")] = False,
    anchors: Annotated[bool, typer.Option("--anchors", help="Anchor workloads and a '% of anchor' column "
                                          "against the H100 anchors (CUDA, random full-size weights).")] = False,
    quality: Annotated[bool, typer.Option("--quality/--no-quality", help="Score each engine on the fixed "
                                          "prompts.")] = True,
    budget: Annotated[float, typer.Option("--budget", help="Seconds per measured point: repeats (median) "
                                          "while under it.")] = 10.0,
    json_out: o.JsonOpt = False,
) -> None:
    """Measure the speech engines (cold/warm load, time to first audio, RTF and x real time per batch
    size, peak memory, quality on fixed prompts) and the scorers (clips/s per batch size).

    Examples:
      asn bench                                              # the offline stack on this machine
      asn bench -e piper,espeak -s none -b 1 -d 10 --out bench_out
      asn bench --device cuda --random-weights --dtype float32,float16 -b 1,8,32,64 --anchors
      asn bench --compare bench_out/bench.json

    Ctrl-C stops and prints what was measured so far (exit status 130).
    """
    from audiosubnet.bench import report
    from audiosubnet.bench.runner import BenchConfig, run_bench
    from audiosubnet.config import load_settings
    from audiosubnet.errors import UsageError

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError as e:
        raise UsageError(f"bad --batch-sizes '{batch_sizes}'", hint="e.g. --batch-sizes 1,8,32") from e
    before = None
    if previous is not None:
        try:
            before = report.load(previous)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {previous} for --compare: {e}",
                             hint="Pass the bench.json of an earlier `asn bench --out DIR`.") from e
    s = load_settings(**o.placement_flags(device, None, None))
    cfg = BenchConfig(engines=_list(engines), scorers=_list(scorers), device=s.device,
                      dtypes=_list(dtype) or [s.dtype], batch_sizes=sizes, duration=duration,
                      random_weights=random_weights or tiny, tiny=tiny, quality=quality, anchors=anchors,
                      budget_s=budget, score_settings=s.score, command=_command(
                          engines=engines, scorers=scorers, device=device, dtype=dtype, batch_sizes=batch_sizes,
                          duration=duration, random_weights=random_weights, tiny=tiny, anchors=anchors,
                          quality=quality, budget=budget))
    result = run_bench(cfg, on_event=lambda msg: err.print(msg, style="dim", markup=False, highlight=False))
    deltas = report.compare(result, before) if before is not None else None
    if json_out:
        out.file.write(report.to_json(result, deltas))
        out.file.flush()
    else:
        report.render(result, out, deltas=deltas)
    if out_dir is not None:
        paths = report.write_all(result, out_dir, deltas)
        err.print("wrote " + ", ".join(str(p) for p in paths.values()), markup=False)
    if result.interrupted:
        raise typer.Exit(130)


def _command(**p: object) -> str:
    """The command line that reproduces this run (for the markdown and JSON)."""
    parts = ["asn", "bench"]
    defaults = {"batch_sizes": "1,8,32", "duration": 30.0, "budget": 10.0, "quality": True}
    for k, v in p.items():
        if v is None or v is False or defaults.get(k) == v:
            continue
        flag = "--" + k.replace("_", "-")
        if k == "quality":
            parts.append("--no-quality")
        elif v is True:
            parts.append(flag)
        else:
            parts += [flag, shlex.quote(f"{v:g}" if isinstance(v, float) else str(v))]
    return " ".join(parts)
