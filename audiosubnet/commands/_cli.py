"""CLI plumbing shared by every command: the one error exit, consoles, logging, JSON output.

Library code raises typed errors (audiosubnet.errors); `guard` is the one place that turns them
into a one-line message plus a hint and an exit code. Tracebacks only with ASN_DEBUG=1.
Data goes to stdout; chatter (logs, progress, errors) to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from audiosubnet.errors import AsnError
from audiosubnet.logs import debug_enabled

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def interactive() -> bool:
    """Progress bars and live tables only on a terminal, and not when ASN_NO_PROGRESS is set."""
    if os.environ.get("ASN_NO_PROGRESS"):
        return False
    return err.is_terminal


def render_error(e: BaseException) -> int:
    """Print one line (+ hint) for an error and return the exit code."""
    if isinstance(e, AsnError):
        err.print(f"[bold red]error:[/] {_one_line(e.message)}", markup=True, highlight=False)
        if e.hint:
            err.print(f"[dim]hint:[/] {_one_line(e.hint)}", markup=True, highlight=False)
        return e.exit_code
    err.print(f"[bold red]error:[/] internal error: {type(e).__name__}: {_one_line(str(e))}", markup=True)
    err.print("[dim]hint:[/] run again with ASN_DEBUG=1 for the traceback, and report it.", markup=True)
    return 1


def _one_line(s: str) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= 400 else s[:397] + "..."


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: typed errors -> one line + exit code; Ctrl-C -> exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as e:
            if debug_enabled():
                raise
            raise typer.Exit(render_error(e)) from None

    return wrapper


def _plain_flags_in_help() -> None:
    """Show `--once`, not `--once <bool>`: some Typer versions print a type placeholder after boolean flags,
    which reads as if the flag took a value (`--once true` is then an error)."""
    try:
        from typer.core import TyperOption
    except ImportError:
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_asn", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:  # ctx: click's (or typer's vendored) Context
        if (getattr(self, "is_flag", False) or getattr(self, "count", False)) and self.metavar is None:
            return None
        label: str | None = shown(self, ctx)
        return label

    display_type_rich._asn = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]  # patches typer's help


_plain_flags_in_help()


class AsnTyper(typer.Typer):
    """A Typer whose commands all go through `guard`."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("rich_markup_mode", "rich")
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(guard(fn))
            return fn

        return decorator


def _log_level_setting() -> str:
    """The `log_level` setting (ASN_LOG_LEVEL, asn.toml); INFO while the settings are invalid (the command
    itself then reports why)."""
    from audiosubnet.config import load_settings
    from audiosubnet.errors import ConfigError

    try:
        return load_settings().log_level
    except ConfigError:
        return "INFO"


def setup_logging(verbosity: int = 0, quiet: bool = False) -> None:
    """Library code logs with getLogger(__name__); only the CLI installs handlers (audiosubnet/logs.py). The
    level: -q (WARNING), -v (INFO), -vv (DEBUG), else the `log_level` setting."""
    from audiosubnet import logs

    level = logging.WARNING if quiet else logging.DEBUG if verbosity >= 2 else logging.INFO
    if not quiet and not verbosity:
        level = getattr(logging, _log_level_setting())
    logs.install(level, console=err, rich_tracebacks=debug_enabled())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()
