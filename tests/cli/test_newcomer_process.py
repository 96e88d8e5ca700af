"""The CLI as a user runs it, in a subprocess: pipes, exit codes, signals, file modes, a full disk, offline.

Each test is about the process (what reaches stdout, the exit status, what SIGINT leaves behind, the
modes of the files it creates), so each runs `python -m audiosubnet` for real. The fake engine (a
tone, instant to load) stands in for speech where the audio itself does not matter.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosubnet import audio

ASN = [sys.executable, "-m", "audiosubnet"]


def asn(*args, input: bytes | None = None, env: dict | None = None, timeout: float = 60, umask: int | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "COLUMNS": "80", **(env or {})}
    e = {k: v for k, v in e.items() if v is not None}
    return subprocess.run([*ASN, *map(str, args)], input=input, capture_output=True, timeout=timeout, env=e,
                          cwd=cwd, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def errors(p: subprocess.CompletedProcess) -> list[str]:
    text = p.stderr.decode()
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


def manifest_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def prompts(path: Path, n: int, text: str = "Row number {i} is here.") -> Path:
    path.write_text("id,text\n" + "".join(f"r{i:03d},{text.format(i=i)}\n" for i in range(n)), encoding="utf-8")
    return path


# ---- 7: standard input and output ------------------------------------------------------------------
def test_say_reads_stdin_and_writes_only_a_wav_to_stdout():
    p = asn("tts", "say", "-", "-o", "-", "--model", "espeak:en-us", input=b"Hello from a pipe.\n")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout[:4] == b"RIFF" and p.stdout[8:12] == b"WAVE"
    a = audio.decode(p.stdout)
    assert a.duration > 0.7 and audio.incomplete(p.stdout) is None  # the whole file, header sizes right
    assert "standard output" in p.stderr.decode()
    p = asn("tts", "say", "Hi there.", "-o", "-", "-f", "flac", "--model", "espeak:en-us")
    assert p.returncode == 0 and p.stdout[:4] == b"fLaC"


def test_batch_reads_the_csv_from_stdin(tmp_path):
    out = tmp_path / "out"
    p = asn("tts", "batch", "-", "--out", out, "--model", "fake", input=b"id,text\na,Hello.\nb,World.\n")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"" and sorted(x.name for x in out.iterdir()) == ["a.wav", "b.wav", "manifest.csv"]


# ---- 8: early checks, unwritable output, full disk, Ctrl-C ------------------------------------------
@pytest.mark.parametrize("args,msg", [(["", "-o", "x.wav"], "the text is empty"),
                                      (["Hello.", "--speed", "9"], "--speed 9 is outside 0.25-4"),
                                      (["你好，世界", "-o", "x.wav"], "cannot read Chinese")])
def test_say_checks_its_input_before_loading_the_model(tmp_path, args, msg):
    t0 = time.monotonic()
    p = asn("tts", "say", *args, "--model", "fake:load_s=30", cwd=tmp_path)
    assert p.returncode == 2 and time.monotonic() - t0 < 20  # the model would take 30 s to load
    assert len(errors(p)) == 1 and msg in errors(p)[0]
    assert not (tmp_path / "x.wav").exists()


def _read_only_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder this process cannot write: a mode (for a normal user) or a read-only mount (for root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        return ro, []
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("running as root without user namespaces: no way to make a read-only folder")
    return ro, ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(ro)]


def test_a_read_only_output_is_one_line_and_exit_2(tmp_path):
    ro, wrap = _read_only_folder(tmp_path)
    for args in (["tts", "say", "Hello.", "-o", ro / "x.wav", "--model", "espeak:en-us"],
                 ["tts", "batch", prompts(tmp_path / "p.csv", 2), "--out", ro / "sub", "--model", "fake"]):
        p = subprocess.run([*wrap, *ASN, *map(str, args)], capture_output=True, timeout=60)
        assert p.returncode == 2, p.stderr.decode()
        lines = errors(p)
        assert len(lines) == 1 and "cannot" in lines[0] and "internal error" not in p.stderr.decode()


def _full_disk_runner(tmp_path: Path, how: str):
    """Run `asn` with its output on a small disk: a 512 KiB tmpfs, or ENOSPC injected after 5 files."""
    out = tmp_path / "out"
    if how == "tmpfs":
        out.mkdir()
        if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
            pytest.skip("no user namespaces here: the injected variant covers it")
        keep = tmp_path / "kept"
        keep.mkdir()
        script = ('keep="$1"; shift; mount -t tmpfs -o size=512k tmpfs "$0" && { "$@"; rc=$?; '
                  'cp "$0"/manifest.csv "$keep"/ 2>/dev/null; ls "$0" > "$keep"/files; exit $rc; }')
        return lambda *args: subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, str(out), str(keep), *ASN, *map(str, args)],
            capture_output=True, timeout=120), out, keep
    inject = tmp_path / "inject.py"
    inject.write_text(
        "import errno, sys\nfrom audiosubnet import audio\nreal = audio.write_atomic\nn = [0]\n"
        "def write_atomic(path, data):\n"
        "    if str(path).endswith('.wav'):\n"
        "        n[0] += 1\n"
        "        if n[0] > 5:\n"
        "            raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
        "    real(path, data)\n"
        "audio.write_atomic = write_atomic\n"
        "from audiosubnet.commands.app import main\nsys.argv[0] = 'asn'\nmain()\n")
    return lambda *args: subprocess.run([sys.executable, str(inject), *map(str, args)], capture_output=True,
                                        timeout=120), out, out


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_a_full_disk_stops_the_batch_with_one_error(tmp_path, how):
    run, out, kept = _full_disk_runner(tmp_path, how)
    csv_path = prompts(tmp_path / "p.csv", 40, "Sentence {i} to fill the disk.")  # ~60 KB of WAV each
    p = run("tts", "batch", csv_path, "--out", out, "--model", "fake:batching=false")
    assert p.returncode == 1, p.stderr.decode()
    lines = errors(p)
    assert len(lines) == 1 and "No space left on device" in lines[0], p.stderr.decode()
    assert p.stderr.decode().count("No space left") == 1  # not one line per remaining row
    rows = manifest_rows(kept / "manifest.csv")
    done = [r for r in rows if r["status"] == "ok"]
    assert 0 < len(done) < 40 and len(rows) == len(done)  # stopped: the other rows were never tried
    files = (kept / "files").read_text().split() if how == "tmpfs" else [x.name for x in out.iterdir()]
    assert {r["file"] for r in done} == {f for f in files if f.endswith(".wav")}


def test_ctrl_c_keeps_every_finished_row_and_exits_130(tmp_path):
    out = tmp_path / "out"
    csv_path = prompts(tmp_path / "p.csv", 200)
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.Popen([*ASN, "tts", "batch", str(csv_path), "--out", str(out), "--model",
                             "fake:delay_ms=60,batching=false"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some rows are done
        if len(list(out.glob("*.wav"))) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode() and "Traceback" not in stderr.decode()
    rows = {r["id"]: r for r in manifest_rows(out / "manifest.csv")}
    wavs = {p.name for p in out.glob("*.wav")}
    assert len(wavs) >= 5 and {r["file"] for r in rows.values() if r["status"] == "ok"} == wavs
    assert len(wavs) < 200
    done = prompts(tmp_path / "done.csv", len(wavs))  # the rows that finished: a rerun skips every one
    again = asn("tts", "batch", done, "--out", out, "--model", "fake:delay_ms=60,batching=false")
    assert again.returncode == 0 and f"0 written, {len(wavs)} already done" in again.stderr.decode()


def test_ctrl_c_during_a_piper_batch_keeps_the_rows_already_spoken(tmp_path):
    """Piper speaks a batch's sentences side by side: each row is written as soon as it is done, and Ctrl-C
    stops the rest at once (it used to finish the whole batch of 16 in the background, then drop it)."""
    out = tmp_path / "out"
    csv_path = prompts(tmp_path / "p.csv", 16, "Row {i}: a sentence long enough to take the voice a little "
                                              "while, so that the batch is still busy when we stop it.")
    proc = subprocess.Popen([*ASN, "tts", "batch", str(csv_path), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "ASN_ORT_THREADS": "2"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*.wav")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert time.monotonic() - t0 < 10  # the sentences not yet started never start
    rows = [r for r in manifest_rows(out / "manifest.csv") if r["status"] == "ok"]
    assert 1 <= len(rows) < 16 and {r["file"] for r in rows} == {p.name for p in out.glob("*.wav")}


# ---- 4: file modes follow the umask ------------------------------------------------------------------
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask=0o027, mode=0o640):
    """Not mkstemp's 0600 (unreadable to the group that serves the files), not a fixed 0644."""
    out = tmp_path / "out"
    p = asn("tts", "batch", prompts(tmp_path / "p.csv", 2), "--out", out, "--model", "fake", umask=umask)
    assert p.returncode == 0, p.stderr.decode()
    p = asn("tts", "say", "Hello.", "-o", tmp_path / "say.wav", "--model", "espeak:en-us", umask=umask)
    assert p.returncode == 0, p.stderr.decode()
    src = tmp_path / "in"
    src.mkdir()
    (src / "v.wav").write_bytes(audio.encode(audio.Audio(
        [0.3 * ((i // 40) % 2 * 2 - 1) for i in range(24000)], 16000), "wav"))
    (src / "v.txt").write_text("Hello.")
    p = asn("clone", "watch", "--once", "--settle", "0", "--model", "fake:clone=true", "--source", src,
            "--target", tmp_path / "vc", "--processed", tmp_path / "done", "--failed", tmp_path / "bad", umask=umask)
    assert p.returncode == 0, p.stderr.decode()
    made = [out / "r000.wav", out / "manifest.csv", tmp_path / "say.wav", tmp_path / "vc" / "v.wav"]
    assert {str(f.relative_to(tmp_path)): oct(f.stat().st_mode & 0o777) for f in made} == \
        {str(f.relative_to(tmp_path)): oct(mode) for f in made}


# ---- 5: offline, fast and the same for every engine ---------------------------------------------------
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://10.255.255.1"])
def test_models_that_need_the_hub_fail_fast_offline_with_one_line(tmp_path, endpoint):
    env = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": endpoint, "ASN_HUB_TIMEOUT": "1.5"}
    for args, model in ((["tts", "say", "Hello.", "-o", tmp_path / "x.wav", "--model", "piper:en_US-lessac-medium"],
                         "piper:en_US-lessac-medium"),
                        (["models", "pull", "pocket"], "pocket:english")):
        t0 = time.monotonic()
        p = asn(*args, env=env)
        took = time.monotonic() - t0
        assert p.returncode == 1, p.stderr.decode()
        assert took < 15, f"{args} took {took:.1f} s offline"
        lines = errors(p)
        assert len(lines) == 1 and "not downloaded" in lines[0], p.stderr.decode()
        assert f"asn models pull {model}" in p.stderr.decode()
        assert "Retrying" not in p.stderr.decode() and "try aga" not in p.stderr.decode()


def test_a_batch_reports_a_missing_model_once(tmp_path):
    p = asn("tts", "batch", prompts(tmp_path / "p.csv", 6), "--out", tmp_path / "out", "--model",
            "piper:en_US-lessac-medium")
    assert p.returncode == 1
    text = p.stderr.decode()
    assert text.count("asn models pull piper:en_US-lessac-medium") == 1 and "6 rows" in text, text


# ---- 2: a file that is not text is one error, not a row per line --------------------------------------
def test_a_binary_prompts_file_is_one_error_exit_2_and_no_manifest(tmp_path):
    bad = tmp_path / "prompts.csv"
    bad.write_bytes(audio.encode(audio.Audio([0.1] * 16000, 16000), "wav"))
    p = asn("tts", "batch", bad, "--out", tmp_path / "out", "--model", "fake")
    assert p.returncode == 2
    assert len(errors(p)) == 1 and "not a text file" in errors(p)[0]
    assert not (tmp_path / "out" / "manifest.csv").exists()
