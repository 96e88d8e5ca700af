"""Log handlers for the programs the package starts: the CLI (`commands/_cli.py`) and the miner's worker
processes. Library code only logs with `getLogger(__name__)`; these entry points install the handlers."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def debug_enabled() -> bool:
    return os.environ.get("ASN_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (a test runner or a daemon may swap it after setup)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbosity: int = 0, quiet: bool = False, console: Console | None = None) -> None:
    """Install the package's handler: rich on a terminal (`console`, default a new stderr console), plain
    lines otherwise. ASN_LOG_LEVEL overrides the level from `verbosity`/`quiet`."""
    from rich.console import Console
    from rich.logging import RichHandler

    err = console if console is not None else Console(stderr=True, highlight=False, soft_wrap=True)
    level = logging.WARNING if quiet else logging.DEBUG if verbosity >= 2 else logging.INFO
    env_level = os.environ.get("ASN_LOG_LEVEL")
    if env_level:
        level = getattr(logging, env_level.upper(), level)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_asn", False):
            root.removeHandler(h)
    if err.is_terminal:
        handler: logging.Handler = RichHandler(console=err, show_path=False, rich_tracebacks=debug_enabled(),
                                               log_time_format="[%X]")
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._asn = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("audiosubnet").setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "huggingface_hub", "filelock", "numba", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
