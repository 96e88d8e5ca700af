"""The root `asn` command: global options and the command groups.

Each group lives in its own module and stays thin (parse -> settings -> one library call ->
render). Heavy imports happen inside commands, so `asn --help` is instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from audiosubnet import __version__
from audiosubnet.commands import bench, clone, config, mine, models, music, score, serve, sim, tts, validate
from audiosubnet.commands._cli import AsnTyper, setup_logging

app = AsnTyper(
    name="asn",
    help="asn: text-to-speech and voice cloning for a Bittensor audio subnet: mine, validate, batch TTS, "
         "voice cloning from folders, scoring and benchmarks.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """asn: the audio subnet toolkit. Set ASN_DEBUG=1 to see tracebacks."""
    setup_logging(verbose, quiet)


app.add_typer(tts.app, name="tts")
app.add_typer(music.app, name="music")
app.add_typer(models.app, name="models")
app.command("voices")(models.voices)
app.add_typer(config.app, name="config")
app.add_typer(clone.app, name="clone")
app.command("mine")(mine.mine)
app.command("validate")(validate.validate)
app.add_typer(sim.app, name="sim")
app.command("score")(score.score)
app.command("bench")(bench.bench)
app.command("serve")(serve.serve)


def main() -> None:
    app()
