"""Connections before any request: caps on open connections (per client address and in total) and the
deadline for a request's headers, enforced in uvicorn's HTTP protocol, where a request does not exist yet.

A client that opens connections and never finishes a header holds nothing of the app's (no queue slot, no
worker), but each connection is a file descriptor and a little memory: past ``max_connections_per_client``
from one address, or ``max_connections`` in all, a new connection is answered 503 with ``Retry-After`` and
closed; a header not complete ``header_timeout_seconds`` after the connection opened (or after the previous
answer on a kept-alive connection) is answered 408 and closed. The body's deadlines are the app's
(``uploads.RequestGuard``), since the body is read there.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from uvicorn.protocols.http.h11_impl import H11Protocol

from emotionlab.serving.limits import ServiceLimits


@dataclass
class ConnectionGuard:
    """Open connections per client address and in total, and what was refused (event loop only)."""

    limits: ServiceLimits
    open: Counter = field(default_factory=Counter)
    total: int = 0
    refused: int = 0  # connections over a cap (503)
    header_timeouts: int = 0  # headers not complete in time (408)

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; None, or why it is refused."""
        if self.total >= self.limits.max_connections:
            self.refused += 1
            return f"busy: {self.total} connections open (limit {self.limits.max_connections})"
        if self.open[address] >= self.limits.max_connections_per_client:
            self.refused += 1
            return (
                f"too many connections from {address}: {self.open[address]} open "
                f"(limit {self.limits.max_connections_per_client} per client address)"
            )
        self.open[address] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


def raw_response(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 JSON answer that closes the connection, written before any request was parsed."""
    body = json.dumps({"detail": detail}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``guard``'s connection caps and the header deadline (``Config(http=...)``)."""
    limits = guard.limits

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._address = self.client[0] if self.client else "unknown"
            self._admitted = False
            self._header_timer = None
            refusal = guard.admit(self._address)
            if refusal is not None:
                retry = str(limits.retry_after_seconds)
                transport.write(raw_response(503, "Service Unavailable", refusal, {"Retry-After": retry}))
                transport.close()
                return
            self._admitted = True
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            if getattr(self, "_admitted", False):
                self._admitted = False
                guard.release(self._address)
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a complete header: the request is the app's now (body deadlines)
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            self._arm_header_timer()  # the next request on a kept-alive connection has the same deadline
            super().on_response_complete()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout_seconds, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is in progress: its headers arrived in time
            guard.header_timeouts += 1
            detail = f"request headers not received within {limits.header_timeout_seconds:g} s"
            self.transport.write(raw_response(408, "Request Timeout", detail))
            self.transport.close()

    return GuardedH11Protocol
