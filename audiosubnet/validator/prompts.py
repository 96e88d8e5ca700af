"""Prompts for validator rounds: the original subnet's dataset, a local CSV, and fresh sentences.

- dataset: `etechgrid/Prompts_for_Voice_cloning_and_TTS` (column `text`) through the HF cache
  (downloaded once on machines with internet; read from the cache offline);
- file: a CSV in the `tts_prompts.csv` format (`--prompts FILE`);
- generated: sentences composed at random from templates, names, places, numbers and dates,
  so a miner cannot precompute answers. Mixed with the other sources by `generated_ratio`.

Every prompt is at most `MAX_CHARS` (256) characters. Offline with nothing cached, the source
falls back to local/generated prompts with one warning.

A round gives every miner a prompt of its own (`PromptSource.issue(n)`): generated sentences are unique by
construction; a sentence from the pool (which other validators may use too) gets a short generated tag
sentence of plain words appended ("Mina counted seven green kettles."). The unique part of each prompt is
what relay detection looks for in other miners' logs (validator/relay.py): a prompt issued to one miner that
reaches another from a third caller was passed on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATASET = "etechgrid/Prompts_for_Voice_cloning_and_TTS"
MAX_CHARS = 256
MIN_CHARS = 12


def clean(text: str) -> str | None:
    t = " ".join(str(text).split())
    if len(t) < MIN_CHARS:
        return None
    if len(t) > MAX_CHARS:  # cut at the last sentence or word boundary that fits
        cut = t[:MAX_CHARS]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        t = cut[: end + 1] if end >= MIN_CHARS else cut[: cut.rfind(" ")].rstrip(",;:") + "."
    return t


def load_csv_prompts(path: Path) -> list[str]:
    from audiosubnet.jobs.tts_batch import read_prompts

    return [t for r in read_prompts(Path(path)) if not r.error and (t := clean(r.text))]


def load_dataset_prompts(repo: str = DATASET, *, download: bool = True) -> list[str]:
    """Texts of the dataset's `text` column from the HF cache (downloading if allowed and reachable)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.csv", "*.parquet", "*.json", "*.jsonl", "**/*.csv", "**/*.parquet", "**/*.jsonl"]
    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=patterns, local_files_only=True))
    except Exception:
        from audiosubnet.runtime import hub

        if not download or hub.offline():  # no half-minute of retries on a machine without internet
            return []
        try:
            folder = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=patterns))
        except Exception as e:
            log.debug("dataset %s unavailable: %s", repo, e)
            return []
    texts: list[str] = []
    for f in sorted(folder.rglob("*")):
        try:
            texts += _read_texts(f)
        except Exception as e:  # one odd file must not lose the rest
            log.warning("skipping %s: %s", f.name, e)
    return [t for x in texts if (t := clean(x))]


def _read_texts(f: Path) -> list[str]:
    if f.suffix == ".csv":
        with f.open(newline="", encoding="utf-8", errors="replace") as fh:
            return [row["text"] for row in csv.DictReader(fh) if row.get("text")]
    if f.suffix in (".jsonl", ".json"):
        raw = f.read_text(encoding="utf-8", errors="replace")
        if f.suffix == ".jsonl":
            rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            rows = json.loads(raw)
        rows = rows if isinstance(rows, list) else rows.get("data", [])
        return [r["text"] for r in rows if isinstance(r, dict) and r.get("text")]
    if f.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            log.warning("pyarrow is not installed: cannot read %s", f.name)
            return []
        table = pq.read_table(io.BytesIO(f.read_bytes()), columns=["text"])
        return [t for t in table.column("text").to_pylist() if t]
    return []


# ---- the generator -----------------------------------------------------------------------
NAMES = ["Amelia", "Bastian", "Chidi", "Dolores", "Eitan", "Farah", "Gunnar", "Hiroshi", "Ines", "Jovana", "Kwame",
         "Lucía", "Mateo", "Niamh", "Oluwaseun", "Priya", "Quentin", "Rosalind", "Soren", "Tamsin", "Uriel",
         "Valentina", "Wendell", "Ximena", "Yusuf", "Zofia"]
PLACES = ["Lisbon", "the harbour", "Nairobi", "the old library", "Reykjavík", "the train station", "Montreal",
          "a mountain village", "Osaka", "the night market", "Valparaíso", "the county fair", "Tbilisi", "the lab"]
OBJECTS = ["a brass telescope", "seventeen paper lanterns", "an umbrella", "the spare key", "a jar of honey",
           "two violins", "a hand-drawn map", "the weather report", "a crate of oranges", "the last ticket"]
ADJ = ["quiet", "crowded", "rain-soaked", "sunlit", "peculiar", "freshly painted", "half-empty", "noisy", "ancient"]
VERBS = ["borrowed", "repaired", "forgot", "delivered", "painted", "described", "photographed", "carried", "sold"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TEMPLATES = [
    "{name} {verb} {obj} near {place} on {month} {day}, {year}.",
    "At {hour}:{minute:02d} {ampm}, {name} said the {adj} room in {place} held {n} people.",
    "Is it true that {name} paid ${price:.2f} for {obj} in {place}?",
    "\u201cWe leave at {hour} sharp,\u201d {name} announced, \u201cwhether or not {name2} brings {obj}.\u201d",
    "The {adj} café in {place} sold {n} cups of coffee by {hour} {ampm}, a record of {pct}% above last year.",
    "{name} and {name2} walked {km} kilometres to {place}, then {verb} {obj} before sunset.",
    "Call {name} at {phone} before {month} {day}; the {adj} shop closes early on Fridays.",
    "In {year}, roughly {big:,} visitors came to {place}, and {name} counted every one of them!",
    "Did {name} really leave {obj} on the {adj} bench outside {place}, or was it {name2}?",
    "Dr. {name} measured {temp} degrees at {place} on the {ordinal} of {month}.",
]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def generate(rng: random.Random) -> str:
    """One fresh sentence (never longer than MAX_CHARS)."""
    name, name2 = rng.sample(NAMES, 2)
    fields = dict(
        name=name, name2=name2, place=rng.choice(PLACES), obj=rng.choice(OBJECTS), adj=rng.choice(ADJ),
        verb=rng.choice(VERBS), month=rng.choice(MONTHS), day=rng.randint(1, 28), year=rng.randint(1890, 2031),
        hour=rng.randint(1, 12), minute=rng.randint(0, 59), ampm=rng.choice(["a.m.", "p.m."]), n=rng.randint(2, 480),
        price=rng.randint(100, 99999) / 100, pct=rng.randint(2, 95), km=rng.randint(2, 60),
        phone=f"555-{rng.randint(0, 9999):04d}", big=rng.randint(1000, 2_000_000), temp=rng.randint(-30, 45),
        ordinal=_ordinal(rng.randint(1, 28)),
    )
    return clean(rng.choice(TEMPLATES).format(**fields)) or "The quick brown fox jumps over the lazy dog."


TAG_NAMES = ["Mina", "Oscar", "Lena", "Hugo", "Nora", "Felix", "Iris", "Theo", "Clara", "Milo", "Ruby", "Leo",
             "Ada", "Otto", "Eva", "Max", "Ivy", "Sam", "Zoe", "Ben"]
TAG_VERBS = ["counted", "painted", "found", "packed", "washed", "carried", "sold", "hid", "fixed", "bought"]
TAG_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
TAG_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "golden", "brown", "pink"]
TAG_THINGS = ["kettles", "buttons", "candles", "baskets", "pencils", "lemons", "blankets", "bottles", "feathers",
              "marbles", "teacups", "ribbons", "shovels", "pillows", "lanterns", "mittens", "carrots", "saddles"]
TAG_MAX = 48  # the longest tag, with its leading space


def tag(rng: random.Random) -> str:
    """A short sentence of plain words (about 2 x 10^5 of them), easy for any voice and any ASR."""
    return (f"{rng.choice(TAG_NAMES)} {rng.choice(TAG_VERBS)} {rng.choice(TAG_NUMBERS)} "
            f"{rng.choice(TAG_COLOURS)} {rng.choice(TAG_THINGS)}.")


@dataclass(frozen=True)
class Prompt:
    """One miner's prompt this round: `text` is sent, `unique` is the part no one else is sent."""

    text: str
    unique: str


@dataclass
class PromptSource:
    """Draws prompts: a share `generated_ratio` freshly generated, the rest from the pool."""

    pool: Sequence[str]
    generated_ratio: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def sample(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            if not self.pool or self.rng.random() < self.generated_ratio:
                out.append(generate(self.rng))
            else:
                out.append(self.rng.choice(self.pool))
        return out

    def issue(self, n: int) -> list[Prompt]:
        """`n` prompts, a different one for each miner: pool sentences (each used once before any repeats) with a
        generated tag sentence appended, or fresh generated sentences; no two share their unique part."""
        out: list[Prompt] = []
        used: set[str] = set()
        pool = list(dict.fromkeys(t for t in self.pool if len(t) <= MAX_CHARS - TAG_MAX))
        bases: list[str] = []
        while len(out) < n:
            if pool and self.rng.random() >= self.generated_ratio:
                if not bases:
                    bases = self.rng.sample(pool, len(pool))
                base, unique = bases.pop(), tag(self.rng)
                text = f"{base} {unique}"
            else:
                text = unique = generate(self.rng)
            if unique.lower() in used:
                continue
            used.add(unique.lower())
            out.append(Prompt(text, unique))
        return out


def open_prompt_source(prompts_file: Path | None = None, *, use_dataset: bool = True,
                       generated_ratio: float = 0.5, seed: int | None = None) -> PromptSource:
    """The validator's prompt source. A given file wins; else the dataset; else generated only."""
    if prompts_file is not None:
        pool = load_csv_prompts(prompts_file)
        origin = str(prompts_file)
    else:
        pool = load_dataset_prompts() if use_dataset else []
        origin = DATASET
        if use_dataset and not pool:
            log.warning("prompt dataset %s is not cached and the Hub is unreachable: using generated prompts "
                        "only (pass --prompts FILE for your own)", DATASET)
    ratio = generated_ratio if pool else 1.0
    log.info("prompts: %d from %s, %.0f%% generated", len(pool), origin if pool else "-", 100 * ratio)
    return PromptSource(pool, ratio, seed)
