"""`clearline serve` sends each response in one write: what uvicorn writes to a
connection in one turn of the event loop (a response's head, then its body) goes to the
socket together at the end of that turn, in order, and a close sends it first."""

from __future__ import annotations

import asyncio

from clearline.pipelines.connectors.one_write_http import OneWrite


class _Transport:
    def __init__(self):
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return {"peername": ("127.0.0.1", 1)}.get(name)


def test_what_one_turn_writes_is_sent_in_one_write_at_its_end():
    async def run():
        real = _Transport()
        one = OneWrite(real, asyncio.get_running_loop())
        one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        one.write(b"{}")
        assert real.sent == []  # held until the turn ends
        await asyncio.sleep(0)
        assert real.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        one.writelines([b"HTTP/1.1 204 No Content\r\n\r\n"])  # the next response: its own write
        await asyncio.sleep(0)
        assert real.sent[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]
        assert one.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's own

    asyncio.run(run())


def test_a_close_sends_what_is_held_first_and_nothing_is_sent_twice():
    async def run():
        real = _Transport()
        one = OneWrite(real, asyncio.get_running_loop())
        one.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        one.close()
        assert real.sent == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and real.closed
        await asyncio.sleep(0)  # the turn's own send finds nothing left
        assert len(real.sent) == 1

    asyncio.run(run())
