"""`asn models`: list, pull and remove engine models."""

from __future__ import annotations

from typing import Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, err, out, print_json

app = AsnTyper(help="Speech models: what is installed or downloaded, and fetching or removing them.")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("list")
def list_models(json_out: o.JsonOpt = False) -> None:
    """Engines and their models: downloaded or not, size on disk, loaded in this process or not.

    Example:
      asn models list --json
    """
    from audiosubnet.models_info import list_models as collect

    rows = collect()
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    t = Table(title="asn models", show_lines=False)
    for c in ("model", "engine", "downloaded", "size", "loaded", "source", "license / notes"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["model"], r["engine"], "yes" if r["downloaded"] else "no", _size(r["size_bytes"]),
                  "yes" if r["loaded"] else "no", r["source"], r["license"] or r["notes"])
    out.print(t)


@app.command("pull")
def pull(model: Annotated[str, typer.Argument(help="Model id, e.g. hf:facebook/mms-tts-eng.")]) -> None:
    """Download a model into the local cache (Hugging Face cache), with a progress bar.

    Examples:
      asn models pull hf:facebook/mms-tts-eng
      asn models pull piper:en_US-lessac-medium
      asn models pull clap:laion/larger_clap_music     (the validator's music scorer)
    """
    from audiosubnet.engines import registry

    if model.startswith("clap:"):
        from audiosubnet.scoring.music import pull_clap

        path = pull_clap(model.removeprefix("clap:"))
        err.print(f"{model}: downloaded ({path})", highlight=False)
        return
    engine, name = registry.parse_model_id(model)
    st = registry.get_engine_class(engine).pull(name)
    err.print(f"{st.model_id}: downloaded ({_size(st.size_bytes)}, {st.source})", highlight=False)


@app.command("rm")
def remove(model: Annotated[str, typer.Argument(help="Model id to delete from the local cache.")]) -> None:
    """Delete a downloaded model's files.

    Example:
      asn models rm hf:suno/bark
    """
    from audiosubnet.engines import registry

    engine, name = registry.parse_model_id(model)
    freed = registry.get_engine_class(engine).remove(name)
    err.print(f"{engine}:{name}: {'removed ' + _size(freed) if freed else 'nothing to remove'}", highlight=False)
