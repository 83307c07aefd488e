"""uvicorn's HTTP/1.1 protocol (h11) with the server's limits against slow and abusive clients.

One ``GuardedH11Protocol`` serves one connection; ``guarded_protocol(limits, headers)`` makes
the class a server is configured with (``server.build_server``). On top of uvicorn's own
checks (the keep-alive timeout, h11's parsing) it enforces:

* a cap on open connections: one more is answered 503 and closed at once, and a warning is
  logged (at most one per ``CAP_REPORT_S``, with the count refused since the last one);
* a deadline for the request line and headers, counted from the connection's opening, or on
  a kept-alive connection from the next request's first byte: past it the connection is
  closed (with a 408 when part of a request came). Resetting a timer on every piece, as an
  idle timeout does, would let a client trickle one byte a second forever;
* a minimum rate for a request body, averaged over a window of the client's time: time in
  which the server itself stopped reading (the app had not taken the previous piece yet),
  or waited to send ``100 Continue``, does not count. Below it: 408 and close;
* a request line with headers over h11's 16 KiB is answered 431 and closed, also when it
  came whole in one read (h11 limits only a head still incomplete in its buffer);
* a request with both ``Transfer-Encoding`` and ``Content-Length`` is answered 400 and
  closed. h11 lets ``Transfer-Encoding`` win; a proxy in front that believed
  ``Content-Length`` would see another request boundary (request smuggling);
* a response that starts before the request's body was read whole (a 401, 403, 413, 415 …)
  goes out with ``Connection: close``, and the connection closes after it instead of reading
  (and discarding) the rest of the body for as long as the client sends it;
* a response the client does not read (the transport's buffer stays full) for
  ``send_timeout_s`` is cut: the connection is aborted, and the app's ``send`` returns;
* every close lingers: the response is flushed and the write side shut down, then input is
  discarded up to ``linger_bytes`` or for ``linger_s``, whichever comes first, before the
  socket closes. A client still sending reads its answer instead of a reset, and still
  cannot keep the server reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, MutableMapping
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ._limits import ENV, ServerLimits

__all__ = ["CAP_REPORT_S", "GuardedH11Protocol", "guarded_protocol"]

log = logging.getLogger(__name__)

Headers = tuple[tuple[bytes, bytes], ...]
#: at most one warning about the connection cap per this many seconds
CAP_REPORT_S = 10.0
_CLOSE = (b"connection", b"close")


def _response(status: int, reason: str, headers: Headers) -> bytes:
    """A whole HTTP/1.1 response with a plain-text ``reason`` that closes the connection."""
    body = (reason + "\n").encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
             b"content-type: text/plain; charset=utf-8",
             b"content-length: " + str(len(body)).encode(), b"connection: close",
             *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Connection(h11.Connection):
    """h11's server side, refusing a request that frames its body twice or whose head is
    over ``max_head`` bytes however it arrived (h11 itself limits only a head that is still
    incomplete in its buffer), and keeping why it refused a request and with what status."""

    def __init__(self, max_head: int) -> None:
        super().__init__(h11.SERVER, max_head)
        self.max_head = max_head
        self.refusal: tuple[int, str] | None = None

    def next_event(self) -> Any:  # h11's Event | NEED_DATA | PAUSED
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = (exc.error_status_hint, str(exc) or "a malformed request")
            raise
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            head = len(event.method) + len(event.target) + sum(
                len(name) + len(value) + 4 for name, value in event.headers)
            if b"transfer-encoding" in names and b"content-length" in names:
                self.refusal = (400, "a request may not have both Transfer-Encoding and "
                                     "Content-Length: send one of them")
            elif head > self.max_head:
                self.refusal = (431, f"the request line and headers are over {self.max_head} "
                                     "bytes")
            if self.refusal is not None:
                raise h11.RemoteProtocolError(self.refusal[1], error_status_hint=self.refusal[0])
        return event


class _Flow(FlowControl):
    """uvicorn's flow control, also counting how long reading was paused by the server."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self._loop = loop
        self._paused_s = 0.0
        self._since: float | None = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._since = self._loop.time()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self._since is not None:
            self._paused_s += self._loop.time() - self._since
            self._since = None
        super().resume_reading()

    def paused_s(self) -> float:
        """Seconds reading was paused so far, the current pause included."""
        current = self._loop.time() - self._since if self._since is not None else 0.0
        return self._paused_s + current


class _LingeringTransport(asyncio.Transport):
    """The connection's transport as uvicorn sees it: ``close()`` starts the protocol's
    lingering close, and nothing more is written once it has."""

    def __init__(self, real: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        super().__init__()
        self.real = real
        self.lingering = False
        self._protocol = protocol

    def close(self) -> None:
        if not self.lingering and not self.real.is_closing():
            self.lingering = True
            self._protocol.linger()

    def is_closing(self) -> bool:
        return self.lingering or self.real.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.lingering:
            self.real.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if not self.lingering:
            self.real.writelines(list_of_data)

    def write_eof(self) -> None:
        self.real.write_eof()

    def can_write_eof(self) -> bool:
        return self.real.can_write_eof()

    def abort(self) -> None:
        self.real.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        if not self.lingering:  # a lingering close reads until its bound
            self.real.pause_reading()

    def resume_reading(self) -> None:
        self.real.resume_reading()

    def is_reading(self) -> bool:
        return self.real.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.real.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.real.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.real.set_write_buffer_limits(high, low)


class _CapReport:
    """Refusals at the connection cap, reported as one warning per CAP_REPORT_S."""

    def __init__(self) -> None:
        self.refused = 0
        self.reported_at = float("-inf")

    def refused_one(self, now: float, peer: str, open_now: int, cap: int) -> None:
        self.refused += 1
        if now - self.reported_at >= CAP_REPORT_S:
            log.warning("connection cap reached: %d connections open, the cap is %d (%s); "
                        "answering new ones 503 (%d refused since the last report, the "
                        "latest from %s)", open_now, cap, ENV["max_connections"],
                        self.refused, peer)
            self.refused, self.reported_at = 0, now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits in the module's docstring; ``limits``,
    ``refusal_headers`` and ``cap`` are set by ``guarded_protocol``."""

    limits: ClassVar[ServerLimits]
    refusal_headers: ClassVar[Headers]
    cap: ClassVar[_CapReport]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _Connection(config.h11_max_incomplete_event_size
                                or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE)
        self._inner_app = self.app
        self.app = self._closing_early_responses
        self._wrapped: _LingeringTransport | None = None
        self._received = 0  # bytes received on this connection
        self._received_before_request = 0  # ... when the current request's head began
        self._header_timer: asyncio.TimerHandle | None = None
        self._rate_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._lingered = 0
        self._samples: deque[tuple[float, int]] = deque()  # (client time, bytes received)

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._wrapped = _LingeringTransport(transport, self)
        super().connection_made(self._wrapped)
        self.flow = _Flow(self._wrapped, self.loop)
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)  # it closes at once: not one of the open ones
            self.cap.refused_one(self.loop.time(), self._peer(), len(self.connections),
                                 self.limits.max_connections)
            self._refuse(503, "too many open connections: try again later")
            return
        self._sync_timers()

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        if self._wrapped is not None and self._wrapped.lingering:
            self._lingered += len(data)
            if self._lingered > self.limits.linger_bytes:
                self._end_linger()
            return
        super().data_received(data)
        self._sync_timers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._received_before_request = self._received
        self._sync_timers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        for timer in (self._linger_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._linger_timer = self._send_timer = None
        if self._wrapped is not None and self._wrapped.lingering:
            log.debug("closed %s after discarding %d bytes of unread input (%s)",
                      self._peer(), self._lingered, exc or "closed")
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout_s,
                                                    self._reader_too_slow)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _reader_too_slow(self) -> None:
        self._send_timer = None
        log.info("cutting %s: it left its response unread for %.1f s (%s)", self._peer(),
                 self.limits.send_timeout_s, ENV["send_timeout_s"])
        assert self._wrapped is not None
        self._wrapped.real.abort()

    def shutdown(self) -> None:
        if self._wrapped is not None and self._wrapped.lingering:
            self._end_linger()
            return
        try:
            super().shutdown()
        except h11.LocalProtocolError:  # h11 is in ERROR: nothing more to say on it
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """h11 found the request malformed, or ``_Connection`` refused it: its status (400,
        431 …) and reason, when it kept them."""
        refusal = self.conn.refusal if isinstance(self.conn, _Connection) else None
        status, reason = refusal or (400, msg)
        log.info("refusing a request from %s (%d): %s", self._peer(), status, reason)
        self._refuse(status, reason)

    async def _closing_early_responses(self, scope: Any, receive: Any, send: Any) -> None:
        """The app, its response marked ``Connection: close`` when it starts before the
        request's body was read whole: the rest is not read."""

        async def send_closing(message: MutableMapping[str, Any]) -> None:
            if (message["type"] == "http.response.start"
                    and self.conn.their_state is h11.SEND_BODY):
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" and b"close" in value.lower()
                           for name, value in headers):
                    message = {**message, "headers": [*headers, _CLOSE]}
                log.debug("answering %s %s before its body was read: closing after it",
                          self._peer(), message.get("status"))
            await send(message)

        await self._inner_app(scope, receive, send_closing)

    # -- the deadlines -------------------------------------------------------------------------

    def _sync_timers(self) -> None:
        """The header deadline runs while a request head is awaited (and the keep-alive
        timeout does not); the body rate is checked while a request body is."""
        if self.transport.is_closing():
            self._cancel_timers()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            self._stop_rate()
            if self._header_timer is None and self.timeout_keep_alive_task is None:
                self._header_timer = self.loop.call_later(self.limits.header_timeout_s,
                                                          self._head_too_slow)
        elif state is h11.SEND_BODY:
            self._stop_header()
            if self._rate_timer is None:
                self._samples = deque([(self._client_time(), self._received)])
                self._rate_timer = self.loop.call_later(self._tick(), self._check_rate)
        else:
            self._cancel_timers()

    def _tick(self) -> float:
        return max(0.05, self.limits.body_rate_window_s / 8)

    def _client_time(self) -> float:
        """The loop's clock less the time reading was paused by the server."""
        paused = self.flow.paused_s() if isinstance(self.flow, _Flow) else 0.0
        return self.loop.time() - paused

    def _head_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._received > self._received_before_request:
            log.info("closing %s (408): no whole request line and headers within %.1f s (%s)",
                     self._peer(), self.limits.header_timeout_s, ENV["header_timeout_s"])
            self._refuse(408, f"the request line and headers took over "
                              f"{self.limits.header_timeout_s:g} s")
        else:
            log.debug("closing %s: no request within %.1f s", self._peer(),
                      self.limits.header_timeout_s)
            self.transport.close()

    def _check_rate(self) -> None:
        self._rate_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        now, limits = self._client_time(), self.limits
        if self.cycle is not None and self.cycle.waiting_for_100_continue:
            self._samples = deque([(now, self._received)])  # the client waits for us
        else:
            self._samples.append((now, self._received))
            while len(self._samples) > 2 and self._samples[1][0] <= now - limits.body_rate_window_s:
                self._samples.popleft()
            start, count = self._samples[0]
            span = now - start
            if span >= limits.body_rate_window_s and (
                    self._received - count < limits.min_body_rate * span):
                rate = (self._received - count) / span
                log.info("closing %s (408): its request body came at %.0f bytes/s over the "
                         "last %.1f s, under the minimum of %d (%s)", self._peer(), rate, span,
                         limits.min_body_rate, ENV["min_body_rate"])
                self._refuse(408, f"the request body came at {rate:.0f} bytes/s, under the "
                                  f"minimum of {limits.min_body_rate} bytes/s")
                return
        self._rate_timer = self.loop.call_later(self._tick(), self._check_rate)

    def _stop_header(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _stop_rate(self) -> None:
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None

    def _cancel_timers(self) -> None:
        self._stop_header()
        self._stop_rate()

    # -- refusing and closing ------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` (unless a response already started) and close. The app, if it
        is running, sees the client gone: its ``receive()`` answers ``http.disconnect``."""
        started = False
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        if not started:
            self.transport.write(_response(status, reason, self.refusal_headers))
        self.transport.close()

    def linger(self) -> None:
        """Called by the transport's ``close()``: flush, shut the write side, then drain."""
        self._cancel_timers()
        self._unset_keepalive_if_required()
        assert self._wrapped is not None
        real = self._wrapped.real
        if not real.can_write_eof():  # TLS has no half-close
            real.close()
            return
        try:
            real.write_eof()  # after the buffered response is sent
        except OSError:  # the client is already gone
            real.abort()
            return
        if not real.is_reading():
            real.resume_reading()
        self._linger_timer = self.loop.call_later(self.limits.linger_s, self._end_linger)

    def _end_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        assert self._wrapped is not None
        real = self._wrapped.real
        if real.is_closing():
            return
        if real.get_write_buffer_size():  # the client does not even read its answer
            real.abort()
        else:
            real.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def guarded_protocol(limits: ServerLimits, refusal_headers: Iterable[tuple[bytes, bytes]] = ()
                     ) -> type[GuardedH11Protocol]:
    """The protocol class for one server: its ``limits``, the headers its own refusals
    carry (the app's security headers), and its cap report."""
    headers = tuple(refusal_headers)

    class Guarded(GuardedH11Protocol):
        pass

    Guarded.limits = limits
    Guarded.refusal_headers = headers
    Guarded.cap = _CapReport()
    return Guarded
