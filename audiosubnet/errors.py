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


# ---- answers of a service (front ends map them to HTTP statuses; not a user's mistake in a command) ------------
class ServiceError(Exception):
    """The service cannot take the request now. `retry_after`: seconds a caller should wait (0: no advice)."""

    def __init__(self, message: str = "", retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(ServiceError):
    """The queue is full. `retry_after` seconds is a fair guess of when to come back (429)."""


class Unavailable(ServiceError):
    """Not started yet, or draining for shutdown (503)."""


class NotOffered(ServiceError):
    """This server does not offer that task, e.g. voice cloning without a cloning engine (501)."""


class RateLimited(ServiceError):
    """The caller is over its rate limit (429 with Retry-After)."""


# ---- errors across a process boundary (engine processes, the HTTP workers of `asn mine --workers`) -------------
Wire = tuple[str, str, "str | None", float]  # (class name in this module, message, hint, retry_after)


def to_wire(e: BaseException) -> Wire | None:
    """The picklable form of one of this module's errors (a subclass defined elsewhere travels as its nearest
    base defined here, e.g. EngineCrashed as EngineError); None for any other exception."""
    if not isinstance(e, (AsnError, ServiceError)):
        return None
    name = next(c.__name__ for c in type(e).__mro__ if globals().get(c.__name__) is c)
    if isinstance(e, AsnError):
        return name, e.message, e.hint, 0.0
    return name, str(e), None, float(e.retry_after)


def from_wire(payload: Wire) -> Exception:
    """The error of `to_wire`, rebuilt by class name (an unknown name: EngineError)."""
    name, message, hint, retry_after = payload
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, ServiceError):
        return cls(message, retry_after)
    if not (isinstance(cls, type) and issubclass(cls, AsnError)):
        cls = EngineError
    e = cls.__new__(cls)  # children with their own __init__ arguments (ModelNotDownloadedError) included
    AsnError.__init__(e, message, hint)
    return e
