"""The one batch-failure policy: a batch of requests through an engine -> per item, audio or a typed error.

`run_each` is used by every front end that runs batches: the miner's service (and `asn serve`, which runs on
it) and the engine process behind both (engines/isolated.py), `asn tts batch` and `asn music batch`
(jobs/batch.py), and `asn clone watch` (jobs/clone_watch.py).

Per item (the other items go on):
  - a request the engine rejects (`engine.check`: InputError) fails alone, before the batch runs;
  - a batch call that raises anything not fatal (below) is retried item by item, so one bad item fails alone.
    That includes errors that are not ours: a RuntimeError("CUDA error: out of memory") of one long text, a
    ValueError deep in a model, a crashed engine process (EngineCrashed). `as_item_error` makes them typed
    (EngineError naming the original class), so every front end reports them the same way.

Fatal (`is_fatal`: stop using this engine for the job): errors that every later item would hit the same way,
because they belong to the machine or the model, not to the item:
  - the model cannot be had: ModelNotDownloadedError, CacheBudgetError (it does not fit), DependencyError or a
    bare ImportError (a missing package), UnknownModelError;
  - the set-up is wrong: any UsageError (ConfigError included);
  - the disk stopped taking files: OSError ENOSPC, EDQUOT, EROFS, EIO (`STOP_ERRNOS`).
`run_each` raises a fatal error at once, with no retries. What "stop" means is the front end's: `asn tts batch`
and `asn music batch` record the error on every remaining row of that model (a rerun retries them);
`asn clone watch` stops and leaves its inputs in place (they succeed once the model is there); a server answers
every request of the batch with it.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from audiosubnet.errors import (
    AsnError,
    CacheBudgetError,
    DependencyError,
    EngineError,
    InputError,
    ModelNotDownloadedError,
    UsageError,
)

log = logging.getLogger(__name__)

#: errors that end the job's use of the engine (see the module docstring)
FATAL_ERRORS: tuple[type[BaseException], ...] = (UsageError, ModelNotDownloadedError, DependencyError,
                                                 CacheBudgetError, ImportError)
#: an OSError with one of these stops the job: every later item would fail the same way
STOP_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

Result = Any  # Audio (or what the engine returns per item) | AsnError
Iterate = Callable[[Any, list[Any]], Iterable[tuple[int, Any]]]


def is_fatal(e: BaseException) -> bool:
    """True for an error that every later item of the job would hit too (see the module docstring)."""
    if isinstance(e, FATAL_ERRORS):
        return True
    return isinstance(e, OSError) and e.errno in STOP_ERRNOS


def as_item_error(e: BaseException) -> AsnError:
    """The typed error of one failed item: ours as it is; anything else an EngineError naming it."""
    if isinstance(e, AsnError):
        return e
    log.error("engine call failed: %s: %s", type(e).__name__, e, exc_info=e)
    return EngineError(f"synthesis failed: {type(e).__name__}: {e}"[:500])


def _default_iterate(engine: Any, requests: list[Any]) -> Iterable[tuple[int, Any]]:
    each = getattr(engine, "synthesize_iter", None)
    return each(requests) if each is not None else enumerate(engine.synthesize(requests))


def run_each(engine: Any, requests: Sequence[Any], *, check: bool = True, iterate: Iterate | None = None,
             on_item: Callable[[int, Result], None] | None = None) -> list[Result]:
    """Run `requests` through `engine` under the one policy: per item, the audio or a typed error (AsnError).

    check: reject bad items one by one first (`engine.check`); pass False when the caller checked them already.
    iterate: how a batch runs, yielding (index, audio) as each item is done (default: `engine.synthesize_iter`,
             else `engine.synthesize`).
    on_item: called with (index, result) the moment an item is settled (a job writes it at once). Its own
             exceptions propagate unchanged (a full disk stops the job); they are never an item's failure.
    Raises the first fatal error (`is_fatal`) at once, without retrying item by item."""
    run = iterate or _default_iterate
    results: list[Result] = [None] * len(requests)
    settled = [False] * len(requests)

    def settle(i: int, result: Result) -> None:
        results[i], settled[i] = result, True
        if on_item is not None:
            on_item(i, result)

    todo: list[int] = []
    for i, r in enumerate(requests):
        if check:
            try:
                engine.check(r)
            except InputError as e:
                settle(i, e)
                continue
        todo.append(i)
    _run(engine, requests, todo, run, settle, settled)
    return [r if done else EngineError("the engine returned no result") for r, done in zip(results, settled,
                                                                                          strict=True)]


def _run(engine: Any, requests: Sequence[Any], todo: list[int], run: Iterate,
         settle: Callable[[int, Result], None], settled: list[bool]) -> None:
    if not todo:
        return
    try:
        for k, audio in _engine_items(run(engine, [requests[i] for i in todo])):
            settle(todo[k], audio)
    except _EngineFailed as failed:
        e = failed.error
        if is_fatal(e):
            raise e from None
        rest = [i for i in todo if not settled[i]]
        if len(todo) == 1:
            if rest:
                settle(rest[0], as_item_error(e))
            return
        log.info("a batch of %d failed (%s: %s); retrying item by item", len(todo), type(e).__name__, e)
        for i in rest:
            _run(engine, requests, [i], run, settle, settled)


class _EngineFailed(Exception):
    """An error raised by the engine (not by the caller's `on_item`)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _engine_items(items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """The engine's (index, audio) pairs; its exceptions wrapped so the caller's own pass through."""
    it = iter(items)
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:
                raise _EngineFailed(e) from e
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
