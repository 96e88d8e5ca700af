"""`asn models`: list, pull and remove engine models."""

from __future__ import annotations

from typing import Annotated

import typer

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, err, out, print_json

app = AsnTyper(help="Speech models: what is installed or downloaded, and fetching or removing them.")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("list")
def list_models(json_out: o.JsonOpt = False) -> None:
    """Engines and their models: downloaded or not, size on disk, loaded in this process or not.

    Nothing is loaded: it reads what is installed and what the Hugging Face cache holds.

    Example:
      asn models list --json
    """
    from audiosubnet.models_info import list_models as collect

    rows = collect()
    if json_out:
        print_json(rows)
        return
    from rich import box
    from rich.table import Table

    wide = out.width >= 140
    t = Table(title="asn models", box=box.SIMPLE_HEAD, title_justify="left")
    # the id never wraps or shrinks (it is what you type next); the source column wraps instead
    t.add_column("model", no_wrap=True, min_width=max([len(r["model"]) for r in rows] + [5]))
    t.add_column("on disk", no_wrap=True)
    t.add_column("size", justify="right", no_wrap=True)
    t.add_column("source", overflow="fold", min_width=12)
    if wide:
        t.add_column("license / notes", overflow="fold")
    for r in rows:  # (`loaded` is in --json: a fresh `asn` process has nothing loaded)
        cells = [r["model"], "yes" if r["downloaded"] else "no", _size(r["size_bytes"]), r["source"] or r["notes"]]
        t.add_row(*cells, *([r["license"] or r["notes"]] if wide else []))
    out.print(t)
    if not wide:
        err.print("licenses and notes: a wider terminal, or asn models list --json", highlight=False)


def voices(
    model: Annotated[str | None, typer.Argument(metavar="[MODEL]", help="A model id or an engine name  "
                                                "[default: the default model]", show_default=False)] = None,
    json_out: o.JsonOpt = False,
) -> None:
    """The voices (speakers) of a model, and the languages it speaks.

    Examples:
      asn voices
      asn voices espeak --json
      asn models voices piper:en_US-joe-medium
    """
    from audiosubnet.config import load_settings
    from audiosubnet.engines import registry

    mid = registry.canonical_id(model or load_settings().model)
    engine = registry.create(mid)
    caps = engine.capabilities
    names = engine.list_voices()
    rows = [{"model": mid, "voice": v, "default": v == caps.default_voice} for v in names]
    if json_out:
        print_json({"model": mid, "languages": list(caps.languages), "scripts": list(engine.scripts_for() or []),
                    "open_voices": caps.open_voices, "voices": rows})
        return
    for v in names:
        out.print(v + ("  (default)" if v == caps.default_voice else ""), highlight=False, markup=False)
    more = "; it also takes other voices (e.g. a variant such as en-us+f3)" if caps.open_voices else ""
    err.print(f"{len(rows)} voice(s) of {mid}, speaking {', '.join(caps.languages)}{more}", highlight=False)


app.command("voices")(voices)


@app.command("pull")
def pull(model: Annotated[str, typer.Argument(help="Model id, e.g. hf:facebook/mms-tts-eng.")],
         json_out: o.JsonOpt = False) -> None:
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
    if json_out:
        print_json({"model": st.model_id, "downloaded": st.downloaded, "size_bytes": st.size_bytes,
                    "source": st.source})
        return
    err.print(f"{st.model_id}: downloaded ({_size(st.size_bytes)}, {st.source})", highlight=False)


@app.command("rm")
def remove(model: Annotated[str, typer.Argument(help="Model id to delete from the local cache.")],
           json_out: o.JsonOpt = False) -> None:
    """Delete a downloaded model's files.

    Example:
      asn models rm hf:suno/bark
    """
    from audiosubnet.engines import registry

    engine, name = registry.parse_model_id(model)
    freed = registry.get_engine_class(engine).remove(name)
    if json_out:
        print_json({"model": f"{engine}:{name}", "freed_bytes": int(freed)})
        return
    err.print(f"{engine}:{name}: {'removed ' + _size(freed) if freed else 'nothing to remove'}", highlight=False)
