"""Benchmark `asn serve` through the real `openai` SDK: time to first audio byte, RTF, concurrent throughput.

    python scripts/bench_serve.py --quick                       # CPU, default voice: TTFB of 5 sentences, RTF
    python scripts/bench_serve.py --random-mms full --device cuda --dtype bfloat16 --workers 4 --clients 1,64 \
        --client-procs 8 --json results/b.json                  # GPU: full-size MMS behind 4 HTTP workers

A real `asn serve` process (this script re-run with --serve; `--workers N` HTTP worker processes in front of
the one that runs the model) listens on a loopback port. Then:
  1. first byte: `--repeats` streamed requests (`with_streaming_response`, pcm) of a 5-sentence text, one at a
     time: time to the first audio byte (p50/p90/p99), time to the last byte, audio seconds; RTF = synthesis
     wall time / audio seconds (lower is faster);
  2. long: the same for a ~`--long-seconds` text (calibrated from the measured characters per audio second);
  3. throughput: for each count in `--clients`, that many concurrent AsyncOpenAI clients in a closed loop for
     `--seconds` (one-sentence requests, wav, not streamed): requests/s, p50/p99, audio seconds per wall
     second (x real time), the server's mean batch size (from /metrics); meanwhile a probe process streams
     the 5-sentence text again and again: the first byte under that load (p50/p99; not in the throughput).
Prints a summary and JSON (also to --json PATH).

`--random-mms full|tiny` serves a random-weight MMS (VITS) model built with audiosubnet.bench.random_models
(needs torch + transformers); `--model` serves any model id. The GPU box needs the `openai` and `av` wheels
besides what scripts/bench_miner.py lists (download them with `pip download` the same way and carry them).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _local  # scripts/_local.py (this script's folder is on sys.path)

FIVE = ("The quick brown fox jumps over the lazy dog. Please remember to water the plants before you leave. "
        "Our meeting moved to Thursday at half past three. The lighthouse keeper climbed the spiral stairs. "
        "Every evening the whole town walks across the bridge to hear music.")
ONE = "A gentle breeze carried the smell of rain across the valley."
LONG_BASE = ("The history of the river town is written in its bridges. The oldest one, built of grey stone, still "
             "carries carts and bicycles every morning. Farther downstream, a steel bridge opened a century later "
             "and brought the railway, the market, and a crowd of new families. Today children fish from both of "
             "them, and on summer nights the whole town walks across to hear music in the park. ")
PCM_RATE = 24000


def serve(flags_json: str) -> None:
    from audiosubnet.commands._cli import setup_logging
    from audiosubnet.config import load_settings
    from audiosubnet.serve.server import run_serve

    setup_logging(0, quiet=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_miner import _ensure_engines  # registers engines when the package is not pip-installed

    _ensure_engines()
    run_serve(load_settings(**json.loads(flags_json)), log_setup=functools.partial(setup_logging, 0, quiet=True))


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _client(base: str):
    import httpx
    import openai

    return openai.OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=300,
                         http_client=httpx.Client(trust_env=False, timeout=300))


def streamed(base: str, text: str, repeats: int, model: str, until: float | None = None, client=None) -> dict:
    """Sequential streamed requests (`repeats` of them, or as many as fit before `until`, a perf_counter
    time): first byte, last byte, audio seconds, RTF."""
    c = client or _client(base)
    firsts, totals, audio, server_first, engine_first = [], [], [], [], []
    while (len(firsts) < repeats) if until is None else (time.perf_counter() < until):
        t0 = time.perf_counter()
        first, n = None, 0
        with c.audio.speech.with_streaming_response.create(model=model, voice="alloy", input=text,
                                                           response_format="pcm") as r:
            server_first.append(float(r.headers.get("x-asn-first-audio-ms", "nan")))
            engine_first.append(float(r.headers.get("x-asn-first-engine-ms", "nan")))
            for chunk in r.iter_bytes():
                if first is None and chunk:
                    first = time.perf_counter() - t0
                n += len(chunk)
        totals.append(time.perf_counter() - t0)
        firsts.append(first or float("nan"))
        audio.append(n / 2 / PCM_RATE)
    audio_s = statistics.mean(audio) if audio else 0.0
    return {"chars": len(text), "repeats": len(firsts), "first_byte_p50_ms": round(1000 * _pct(firsts, 0.5), 1),
            "first_byte_p90_ms": round(1000 * _pct(firsts, 0.9), 1),
            "first_byte_p99_ms": round(1000 * _pct(firsts, 0.99), 1),
            "server_first_audio_p50_ms": round(_pct(server_first, 0.5), 1),
            "first_chunk_engine_p50_ms": round(_pct(engine_first, 0.5), 1),
            "last_byte_p50_ms": round(1000 * _pct(totals, 0.5), 1), "audio_s": round(audio_s, 2),
            "rtf": round(_pct(totals, 0.5) / audio_s, 4) if audio_s else None}


async def _closed_loop(base: str, clients: int, seconds: float, model: str) -> tuple[list, float]:
    import httpx
    import openai

    http = httpx.AsyncClient(trust_env=False, timeout=300, limits=httpx.Limits(max_connections=clients + 8))
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, http_client=http)
    rows: list[tuple[float, float] | None] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                r = await c.audio.speech.create(model=model, voice="alloy", input=ONE, response_format="wav")
                data = r.content
                rows.append((time.perf_counter() - t0, (len(data) - 44) / 2 / int.from_bytes(data[24:28], "little")))
            except Exception:
                rows.append(None)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    await http.aclose()
    return rows, wall


def _load_proc(args: tuple) -> tuple[list, float]:
    base, clients, seconds, model = args
    return asyncio.run(_closed_loop(base, clients, seconds, model))


def _probe(base: str, text: str, start: float, seconds: float, model: str) -> dict:
    """(probe process) Streamed requests one after another while the load runs: the first byte under load."""
    client = _client(base)  # the imports take seconds on a busy CPU: before the window opens
    time.sleep(max(0.0, start - time.time()))
    return streamed(base, text, 0, model, until=time.perf_counter() + seconds, client=client)


def run_level(base: str, clients: int, seconds: float, procs: int, model: str, probe: str | None = None
              ) -> tuple[list, float, dict | None]:
    """`clients` closed-loop clients spread over `procs` processes (one client process is a bottleneck on a GPU);
    with `probe`, one more process streams that text again and again meanwhile (from 1/4 to 3/4 of the time)."""
    import multiprocessing as mp

    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)] if procs > 1 else []
    with mp.get_context("spawn").Pool(len(shares) + (1 if probe else 0) or 1) as pool:
        probed = pool.apply_async(_probe, (base, probe, time.time() + seconds / 4, seconds / 2, model)) \
            if probe else None
        if shares:
            parts = pool.map(_load_proc, [(base, n, seconds, model) for n in shares if n])
        else:
            parts = [asyncio.run(_closed_loop(base, clients, seconds, model))]
        under_load = probed.get(seconds + 120) if probed is not None else None
    return [r for rows, _ in parts for r in rows], max(w for _, w in parts), under_load


def _batches(base: str) -> tuple[float, float]:
    import httpx

    text = httpx.get(base + "/metrics", timeout=10, trust_env=False).text

    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))

    return total("asn_serve_batch_size_sum"), total("asn_serve_batch_size_count")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="auto", help="model id to serve (default: the offline Piper voice)")
    ap.add_argument("--random-mms", choices=("tiny", "full"), help="serve a random-weight MMS model of this size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--repeats", type=int, default=10, help="sequential streamed requests per text")
    ap.add_argument("--long-seconds", type=float, default=30.0)
    ap.add_argument("--clients", default="1,8", help="comma-separated concurrent client counts (0: skip)")
    ap.add_argument("--seconds", type=float, default=10.0, help="load duration per client count")
    ap.add_argument("--client-procs", type=int, default=1, help="processes the concurrent clients run in")
    ap.add_argument("--workers", type=int, default=1, help="HTTP worker processes of asn serve (--workers)")
    ap.add_argument("--no-probe", action="store_true", help="no first-byte probe during the concurrent load")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=1, help="engine calls in flight at once (--concurrency)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: 5 repeats, 1 and 4 clients for 3 s")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.quick:
        args.repeats, args.clients, args.seconds, args.long_seconds = 5, "1,4", 3.0, 15.0

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    model = args.model
    if args.random_mms:
        from audiosubnet.bench.random_models import build_mms

        model = f"mms:{build_mms(tmp / f'mms-{args.random_mms}', size=args.random_mms)}"
    port = _local.free_port()
    base = f"http://127.0.0.1:{port}"
    flags = {"home": str(tmp / "home"), "model": model, "device": args.device, "dtype": args.dtype,
             "serve.host": "127.0.0.1", "serve.port": port, "serve.max_batch": args.max_batch,
             "serve.max_wait_ms": args.max_wait_ms, "serve.queue_size": 8192, "serve.rate_limit_per_min": 0,
             "serve.clone_model": "none", "serve.keep_alive": "-1", "serve.workers": args.workers,
             "serve.concurrency": args.concurrency}
    log = tmp / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(flags)], stdout=f,
                                stderr=subprocess.STDOUT, env=env)
    result: dict = {"model": model, "device": args.device, "dtype": args.dtype, "workers": args.workers,
                    "cpu_count": os.cpu_count()}
    try:
        _local.wait_healthy(proc, base, log, 600, "asn serve")
        streamed(base, "Warm up the voice. And a second sentence.", 2, "tts-1")  # loads the model
        result["five_sentences"] = five = streamed(base, FIVE, args.repeats, "tts-1")
        print(f"5 sentences ({five['chars']} chars, {five['audio_s']} s audio): first byte p50 "
              f"{five['first_byte_p50_ms']} ms (p90 {five['first_byte_p90_ms']}, p99 {five['first_byte_p99_ms']}; "
              f"in the server "
              f"{five['server_first_audio_p50_ms']} ms, of which the engine {five['first_chunk_engine_p50_ms']} ms), "
              f"last byte "
              f"{five['last_byte_p50_ms']} ms, RTF {five['rtf']}", file=sys.stderr)
        per_char = five["audio_s"] / five["chars"]
        long_text = (LONG_BASE * 20)[: int(args.long_seconds / per_char)]
        long_text = long_text[: long_text.rfind(".") + 1] or long_text
        result["long"] = lg = streamed(base, long_text, max(1, args.repeats // 2), "tts-1")
        print(f"long text ({lg['chars']} chars, {lg['audio_s']} s audio): first byte p50 {lg['first_byte_p50_ms']} "
              f"ms (p99 {lg['first_byte_p99_ms']}), last byte {lg['last_byte_p50_ms']} ms, RTF {lg['rtf']}",
              file=sys.stderr)
        result["levels"] = []
        for n in [int(x) for x in args.clients.split(",") if x.strip() and int(x) > 0]:
            b0 = _batches(base)
            rows, wall, probed = run_level(base, n, args.seconds, args.client_procs, "tts-1",
                                           None if args.no_probe else FIVE)
            b1 = _batches(base)
            ok = [r for r in rows if r is not None]
            lat = [r[0] for r in ok]
            level = {"clients": n, "ok": len(ok), "errors": len(rows) - len(ok),
                     "req_per_s": round(len(ok) / wall, 2), "p50_ms": round(1000 * _pct(lat, 0.5), 1),
                     "p99_ms": round(1000 * _pct(lat, 0.99), 1),
                     "x_real_time": round(sum(r[1] for r in ok) / wall, 1),
                     "mean_batch": round((b1[0] - b0[0]) / max(1.0, b1[1] - b0[1]), 2), "probe": probed}
            result["levels"].append(level)
            under = (f"; 5-sentence first byte under this load p50 {probed['first_byte_p50_ms']} ms, p99 "
                     f"{probed['first_byte_p99_ms']} ms ({probed['repeats']} requests)") if probed else ""
            print(f"{n:>3} clients: {level['req_per_s']} req/s, p50 {level['p50_ms']} ms, p99 {level['p99_ms']} ms, "
                  f"{level['x_real_time']}x real time, batch {level['mean_batch']}, errors {level['errors']}{under}",
                  file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
