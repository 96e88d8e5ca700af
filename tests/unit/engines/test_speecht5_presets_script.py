"""scripts/make_speecht5_presets.py: real presets from a (fake) x-vector zip, and the placeholders."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]


def load_script():
    spec = importlib.util.spec_from_file_location("make_presets", ROOT / "scripts" / "make_speecht5_presets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_zip(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = {}
    with zipfile.ZipFile(path, "w") as z:
        for spk in ("slt", "bdl", "clb", "rms", "ksp", "awb", "jmk"):
            for utt in ("arctic_a0001", "arctic_a0508", "arctic_b0087"):
                x = rng.standard_normal(512).astype(np.float32)
                buf = io.BytesIO()
                np.save(buf, x)
                name = f"cmu_us_{spk}_arctic-wav-{utt}.npy"
                z.writestr(f"spkrec-xvect/{name}", buf.getvalue())
                vectors[name] = x
    return vectors


def test_from_zip_utterance_and_mean(tmp_path):
    mod = load_script()
    vectors = fake_zip(tmp_path / "x.zip")
    out = tmp_path / "presets"
    assert mod.main(["--zip", str(tmp_path / "x.zip"), "--out", str(out)]) == 0
    assert np.array_equal(np.load(out / "slt.npy"), vectors["cmu_us_slt_arctic-wav-arctic_a0508.npy"])
    manifest = json.loads((out / "speakers.json").read_text())
    assert manifest["placeholder"] is False and not manifest["speakers"]["slt"]["placeholder"]
    assert mod.main(["--zip", str(tmp_path / "x.zip"), "--out", str(out), "--method", "mean"]) == 0
    awb = np.load(out / "awb.npy")
    assert awb.shape == (512,) and abs(np.linalg.norm(awb) - 1) < 1e-5


def test_placeholders_reproduce_the_shipped_files(tmp_path):
    mod = load_script()
    assert mod.main(["--placeholder", "--out", str(tmp_path)]) == 0
    shipped = ROOT / "audiosubnet" / "data" / "speecht5_speakers"
    manifest = json.loads((shipped / "speakers.json").read_text())
    for name, entry in manifest["speakers"].items():
        if entry.get("placeholder"):
            assert np.array_equal(np.load(tmp_path / f"{name}.npy"), np.load(shipped / entry["file"]))
