#!/usr/bin/env python3
"""Make the SpeechT5 speaker presets shipped in audiosubnet/data/speecht5_speakers/.

Real presets (needs internet, once): the 512-dim x-vectors of the seven CMU ARCTIC speakers from
the Hugging Face dataset `Matthijs/cmu-arctic-xvectors` (file `spkrec-xvect.zip`: one .npy per
utterance, computed with speechbrain/spkrec-xvect-voxceleb; the vectors every SpeechT5 example uses).

    python scripts/make_speecht5_presets.py                  # one canonical utterance per speaker
    python scripts/make_speecht5_presets.py --method mean    # mean over each speaker's utterances
    python scripts/make_speecht5_presets.py --zip spkrec-xvect.zip   # from a copy of the zip, offline

`--method utterance` (default) takes the utterances of the Hugging Face SpeechT5 demo
(slt = cmu_us_slt_arctic-wav-arctic_a0508, index 7306 of the sorted zip, the voice of the
transformers docs); `--method mean` averages a speaker's x-vectors and re-normalises them.

Placeholders (what the repository ships until someone runs the above):

    python scripts/make_speecht5_presets.py --placeholder

writes random unit vectors, seeded by the speaker's name, under the same names, and marks
them `"placeholder": true` in speakers.json (the engine then logs a warning at load).

Writes `<name>.npy` (float32, shape (512,)) and `speakers.json` (provenance) into --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = "Matthijs/cmu-arctic-xvectors"
ZIP_NAME = "spkrec-xvect.zip"
OUT = Path(__file__).resolve().parent.parent / "audiosubnet" / "data" / "speecht5_speakers"
DIM = 512

# name -> (description, canonical utterance). Five from the Hugging Face SpeechT5 demo
# (Matthijs/speecht5-tts-demo); awb and jmk are not in it: their first utterance.
SPEAKERS = {
    "slt": ("US English, female", "arctic_a0508"),
    "clb": ("US English, female", "arctic_a0144"),
    "bdl": ("US English, male", "arctic_a0009"),
    "rms": ("US English, male", "arctic_b0353"),
    "ksp": ("Indian English, male", "arctic_b0087"),
    "awb": ("Scottish English, male", "arctic_a0001"),
    "jmk": ("Canadian English, male", "arctic_a0001"),
}
NAME_RE = re.compile(r"cmu_us_(?P<spk>[a-z]+)_arctic-wav-(?P<utt>arctic_[ab]\d{4})\.npy$")


def placeholder(name: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"asn-speecht5-placeholder:{name}".encode()).digest()[:8], "little")
    x = np.random.default_rng(seed).standard_normal(DIM)
    return (x / np.linalg.norm(x)).astype(np.float32)


def read_zip(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """speaker -> utterance -> x-vector."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            m = NAME_RE.search(name)
            if not m:
                continue
            x = np.load(io.BytesIO(z.read(name))).astype(np.float32).reshape(-1)
            if x.shape[0] != DIM:
                raise SystemExit(f"{name}: expected {DIM} values, got {x.shape[0]}")
            out.setdefault(m["spk"], {})[m["utt"]] = x
    if not out:
        raise SystemExit(f"{path}: no cmu_us_*_arctic-wav-arctic_*.npy entries")
    return out


def fetch_zip() -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise SystemExit("needs huggingface_hub (pip install huggingface_hub)") from e
    return Path(hf_hub_download(REPO, ZIP_NAME, repo_type="dataset"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    ap.add_argument("--method", choices=("utterance", "mean"), default="utterance")
    ap.add_argument("--zip", type=Path, help=f"a local copy of {REPO}/{ZIP_NAME} (else downloaded)")
    ap.add_argument("--placeholder", action="store_true", help="write seeded random placeholders (offline)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    today = dt.date.today().isoformat()
    entries: dict[str, dict] = {}

    if args.placeholder:
        for name, (desc, utt) in SPEAKERS.items():
            np.save(args.out / f"{name}.npy", placeholder(name))
            entries[name] = {"file": f"{name}.npy", "description": desc, "placeholder": True,
                             "source": "random unit vector, numpy default_rng seeded by "
                                       f"sha256('asn-speecht5-placeholder:{name}'); NOT the CMU ARCTIC speaker",
                             "replace_with": f"{REPO} {ZIP_NAME} cmu_us_{name}_arctic-wav-{utt}.npy"}
        manifest = {"placeholder": True, "made": today, "by": "scripts/make_speecht5_presets.py --placeholder",
                    "speakers": entries}
    else:
        zpath = args.zip or fetch_zip()
        data = read_zip(zpath)
        for name, (desc, utt) in SPEAKERS.items():
            utts = data.get(name)
            if not utts:
                print(f"warning: no x-vectors for {name} in {zpath}; skipped", file=sys.stderr)
                continue
            if args.method == "mean":
                x = np.mean(np.stack(list(utts.values())), axis=0)
                x = x / np.linalg.norm(x)
                what = f"mean of {len(utts)} utterances, L2-normalised"
            else:
                if utt not in utts:
                    utt = sorted(utts)[0]
                    print(f"warning: {name}: canonical utterance missing; using {utt}", file=sys.stderr)
                x, what = utts[utt], f"cmu_us_{name}_arctic-wav-{utt}.npy"
            np.save(args.out / f"{name}.npy", np.asarray(x, dtype=np.float32))
            entries[name] = {"file": f"{name}.npy", "description": desc, "placeholder": False,
                             "source": f"{REPO} {ZIP_NAME}: {what}"}
        manifest = {"placeholder": False, "made": today,
                    "by": f"scripts/make_speecht5_presets.py --method {args.method}",
                    "dataset": REPO, "zip_sha256": sha256(zpath), "license": "CMU ARCTIC: free use (BSD-style); "
                    "x-vectors by Matthijs Hollemans from speechbrain/spkrec-xvect-voxceleb (Apache-2.0)",
                    "speakers": entries}
    (args.out / "speakers.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    kind = "placeholder" if args.placeholder else args.method
    print(f"wrote {len(entries)} {kind} presets to {args.out}: {', '.join(entries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
