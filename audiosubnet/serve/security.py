"""Who may call `asn serve`: the bind rule, API keys, per-caller rate limits.

- Loopback without a key is open (only this machine can connect). Binding any other address needs at least
  one API key, or an explicit `--insecure`; otherwise the server refuses to start.
- Keys arrive as `Authorization: Bearer KEY` (what the `openai` SDK sends) and are compared with
  `hmac.compare_digest` against every configured key (no early exit, so timing says nothing about which key
  or how much of one matched).
- Each caller (a key, or the client address when no keys are set) has a token bucket of
  `rate_limit_per_min` requests per minute, with 10 seconds' worth of burst. With `--workers N` the buckets live
  in the main process (every worker asks it: serve/workers.py), so the limit is per caller across all workers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from audiosubnet.errors import UsageError


def is_loopback(host: str) -> bool:
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_bind(host: str, api_keys: Sequence[str], insecure: bool) -> None:
    """Raise UsageError for a non-loopback bind without keys (unless `insecure`). An empty key is no key:
    `KeyCheck` ignores it, so it must not open a public bind either."""
    if is_loopback(host) or any(api_keys) or insecure:
        return
    raise UsageError(f"refusing to serve on {host} without an API key",
                     hint="Pass --api-key KEY (clients send 'Authorization: Bearer KEY'), or --insecure to serve "
                          "it open to the network.")


class KeyCheck:
    def __init__(self, keys: Sequence[str]):
        self._keys = [k.encode() for k in keys if k]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def caller(self, authorization: str | None) -> str | None:
        """A stable label of the matching key ('key:1a2b3c4d'), or None when none matches."""
        presented = _bearer(authorization).encode()
        matched = None
        for k in self._keys:  # every key is compared, whatever matched
            if hmac.compare_digest(presented, k):
                matched = k
        if matched is None or not presented:
            return None
        return "key:" + hashlib.sha256(matched).hexdigest()[:8]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class Limiter(Protocol):
    async def wait(self, caller: str) -> float:
        """0 when admitted, else the seconds to wait."""
        ...


class RateLimiter:
    """Token buckets per caller (at most `max_callers` remembered, least recently seen forgotten first)."""

    def __init__(self, per_min: float, burst_s: float = 10.0, max_callers: int = 10000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = per_min / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.max_callers = max_callers
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def wait(self, caller: str) -> float:
        return self.take(caller)

    def take(self, caller: str) -> float:
        """0 when admitted, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, stamp = self._buckets.pop(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
