"""A loopback TCP proxy that cuts its connections at chosen or random points.

Between a client and a server it relays bytes both ways; :meth:`CuttingProxy.cut` aborts
every connection it holds (both sides see a reset), and with ``cuts`` > 0 each new
connection is cut once after a random number of relayed bytes in ``cut_bytes``, until
``cuts`` cuts have happened. Used by the resume tests and ``streamst bench chaos``: the
network failures a client on conference Wi-Fi or behind a proxy meets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class CuttingProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", cuts: int = 0,
                 cut_bytes: tuple[int, int] = (2_000, 200_000), rng: random.Random | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cuts_left, self.cut_bytes = cuts, cut_bytes
        self.rng = rng or random.Random()
        self.cuts = 0  # connections cut so far
        self.connections = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.port

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def retarget(self, upstream_port: int) -> None:
        """New connections go to another upstream port (a restarted server)."""
        self.upstream = (self.upstream[0], upstream_port)

    def cut(self) -> int:
        """Abort every open connection now; returns how many."""
        pairs = list(self._pairs)
        for a, b in pairs:
            self._abort(a, b)
        self.cuts += len(pairs)
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @staticmethod
    def _abort(*writers: asyncio.StreamWriter) -> None:
        for w in writers:
            w.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        budget: list[int | None] = [None]
        if self.cuts_left > 0:
            self.cuts_left -= 1
            budget[0] = self.rng.randint(*self.cut_bytes)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if budget[0] is not None:
                        budget[0] -= len(data)
                        if budget[0] <= 0:  # cut here: this piece is lost too, as on a real network
                            self.cuts += 1
                            budget[0] = None
                            self._abort(*pair)
                            return
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            self._abort(*pair)
