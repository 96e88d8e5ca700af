"""Typed errors. Library code raises these; `commands/app.py` maps them to one line + hint.

Every error carries the next step for the user in `hint`. `exit_code` follows the CLI
convention: 2 for a usage/input problem the user must fix, 1 for a failure at run time.
"""

from __future__ import annotations


class AsnError(Exception):
    """Base of every error a user may see. `str(e)` is one line; `hint` is the next step."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(AsnError):
    """Bad flags, missing/empty input files, unwritable output folders."""

    exit_code = 2


class ConfigError(UsageError):
    """Invalid settings (config file, environment or flags)."""


class InputError(AsnError):
    """One input item is bad (empty text, too long, unknown voice...). Reported per item."""


class AudioDecodeError(InputError):
    """Bytes or a file that are not decodable audio."""


class UnknownModelError(UsageError):
    """A model id that no registered engine understands."""


class UnknownEngineError(UnknownModelError):
    """An engine name that is not registered."""


class ModelNotDownloadedError(AsnError):
    """The model is not in the local cache and the Hub cannot be reached."""

    def __init__(self, model_id: str, detail: str | None = None):
        msg = f"Model '{model_id}' is not downloaded and the Hugging Face Hub is not reachable"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, hint=f"Run `asn models pull {model_id}` on a machine with internet access.")
        self.model_id = model_id


class DependencyError(AsnError):
    """An optional dependency (extra) is not installed."""

    def __init__(self, package: str, extra: str, what: str):
        super().__init__(
            f"{what} needs the Python package '{package}', which is not installed",
            hint=f"Install it with `pip install 'audiosubnet[{extra}]'`.",
        )


class EngineError(AsnError):
    """An engine failed while loading or synthesizing."""


class CacheBudgetError(AsnError):
    """A model does not fit the ModelCache budget even after evicting everything evictable."""


class ChainError(AsnError):
    """The chain (or the simulated chain) refused or failed a call."""


class NotRegisteredError(ChainError):
    """A hotkey is not registered on the subnet."""

    exit_code = 2


class WalletError(UsageError):
    """Wallet files missing or unreadable."""
