"""Connection deadlines for the miner's uvicorn: slow headers, slow bodies and idle connections are closed.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but it has no deadline for a request
that is being sent: a client that trickles its headers (or never sends any) or its body holds a socket and a
file descriptor for as long as it likes, and a few hundred of them make the miner unreachable. The protocol
classes here are uvicorn's own (httptools when installed, else h11) with one timer per connection:

  - headers: a connection must deliver a complete request head within `header_timeout_s` of opening, or of the
    first byte after its previous response (a silent keep-alive connection is uvicorn's `timeout_keep_alive`);
  - body: the body must be complete within `body_timeout_s` of the head; the app then sees a disconnect
    (counted as a client disconnect, not an error);
  - the app's own time (queue, engine) is not limited here.
A connection past a deadline is closed without a response (the client is not reading one).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_KEEP_ALIVE_S = 10.0  # above httpx's 5 s pool expiry, so clients drop idle connections first


class _Deadlines:
    """Mixed in front of a uvicorn HTTP protocol class; `header_timeout_s`/`body_timeout_s` set by subclass."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s = DEFAULT_BODY_TIMEOUT_S
    closed_by_deadline = 0  # connections closed by these deadlines (process-wide, for tests and metrics)

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]  # the uvicorn protocol class is next in the MRO
        now = self.loop.time()  # type: ignore[attr-defined]
        self._asn_head_since: float | None = now  # waiting for a request head since
        self._asn_body_since = now
        self._asn_cycle: Any = None
        period = min(self.header_timeout_s, self.body_timeout_s) / 4.0
        self._asn_period = min(1.0, max(0.05, period))
        self._asn_timer = self.loop.call_later(self._asn_period, self._asn_check)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        if (cycle is None or cycle.response_complete) and self._asn_head_since is None:
            self._asn_head_since = self.loop.time()  # type: ignore[attr-defined]
        super().data_received(data)  # type: ignore[misc]
        self._asn_seen()

    def _asn_seen(self) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        if cycle is not None and cycle is not self._asn_cycle:  # a new request's head arrived
            self._asn_cycle = cycle
            self._asn_head_since = None
            self._asn_body_since = self.loop.time()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_asn_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _asn_check(self) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if transport is None or transport.is_closing():
            return
        self._asn_seen()
        now = self.loop.time()  # type: ignore[attr-defined]
        cycle = self.cycle  # type: ignore[attr-defined]
        waiting_head = cycle is None or cycle.response_complete
        if waiting_head and self._asn_head_since is not None and now - self._asn_head_since > self.header_timeout_s:
            self._asn_close()
            return
        if not waiting_head and cycle.more_body and not cycle.disconnected \
                and now - self._asn_body_since > self.body_timeout_s:
            self._asn_close()
            return
        self._asn_timer = self.loop.call_later(self._asn_period, self._asn_check)  # type: ignore[attr-defined]

    def _asn_close(self) -> None:
        _Deadlines.closed_by_deadline += 1
        self.transport.close()  # type: ignore[attr-defined]


def protocol_class(header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
                   body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S) -> type:
    """uvicorn's HTTP protocol (httptools if installed, else h11) with the deadlines above."""
    if importlib.util.find_spec("httptools") is not None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:  # pragma: no cover - the subnet extra installs httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return type(f"Deadline{base.__name__}", (_Deadlines, base),
                {"header_timeout_s": float(header_timeout_s), "body_timeout_s": float(body_timeout_s)})


def uvicorn_config(app: Any, options: dict[str, Any]) -> Any:
    """`uvicorn.Config(app, **options)`, where options may also carry `header_timeout_s` and `body_timeout_s`
    (plain numbers, so the options dict stays picklable for `--workers N`)."""
    import uvicorn

    opts = dict(options)
    header = opts.pop("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
    body = opts.pop("body_timeout_s", DEFAULT_BODY_TIMEOUT_S)
    opts.setdefault("http", protocol_class(header, body))
    return uvicorn.Config(app, **opts)
