"""uvicorn's httptools HTTP protocol, sending each response in one write: what
`clearline serve` runs the decision API on (given to uvicorn by name, so each worker
process imports it)."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWrite:
    """A connection's transport that sends what one turn of the event loop writes to it
    in one write, at the end of that turn.

    Why: uvicorn writes a response's status line and headers, then its body, each with
    its own `transport.write`, and uvloop sends each at once: two send calls a response,
    and two segments the client reads and parses apart. Together they are one (measured
    on loopback, sender and reader: 28 against 36-42 us of CPU a response). The bytes and
    their order are unchanged; a close sends what is held first."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: Any, loop: Any):
        self._transport, self._loop, self._held = transport, loop, None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._send)
        else:
            self._held.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _send(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class OneWriteHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `OneWrite` transport."""

    def connection_made(self, transport) -> None:
        super().connection_made(OneWrite(transport, self.loop))
