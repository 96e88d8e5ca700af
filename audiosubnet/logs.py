"""Log handlers of a process that asn runs: the CLI and the processes it starts (the HTTP workers of
`asn mine --workers N`). Library modules only log (`logging.getLogger(__name__)`); the process's entry point
installs the handler once: `commands/_cli.setup_logging` (the level from -v/-q or the `log_level` setting), a
worker with the level its parent passed it.

Chatter goes to stderr: a Rich handler on a terminal, else plain lines ("time LEVEL logger: message").
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    _StreamHandler = logging.StreamHandler[TextIO]
else:  # StreamHandler is subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler

#: libraries whose INFO lines are noise for asn's users
NOISY = ("httpx", "httpcore", "urllib3", "huggingface_hub", "filelock", "numba", "asyncio")


class StderrHandler(_StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (a test runner or a daemon may swap it after setup)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def debug_enabled() -> bool:
    """ASN_DEBUG=1: tracebacks for user mistakes, rich tracebacks in the log."""
    return os.environ.get("ASN_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def install(level: int, *, console: Console | None = None, rich_tracebacks: bool = False) -> None:
    """asn's one handler on the root logger (replacing an earlier one of ours), `level` for asn's loggers,
    WARNING for everything else. `console`: the Rich console of stderr (default: a new one)."""
    from rich.console import Console
    from rich.logging import RichHandler

    console = console if console is not None else Console(stderr=True, highlight=False, soft_wrap=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_asn", False):
            root.removeHandler(h)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=rich_tracebacks,
                                               log_time_format="[%X]")
    else:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._asn = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("audiosubnet").setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
