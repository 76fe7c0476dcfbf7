"""A TCP proxy that can stall: what a database (or any server) looks like when it stops
answering without closing its connections (a frozen VM, a network partition, a full
disk), as no error can show.

    proxy = await StallProxy.start(lambda: asyncio.open_connection("127.0.0.1", 5432))
    ... connect through proxy.port ...
    proxy.stall()    # bytes stop flowing both ways; new connections hang too
    proxy.resume()   # what waited flows on

A connection closed by either side while stalled is dropped with what it had not
delivered: a statement stuck in a stalled proxy never reaches the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class StallProxy:
    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @classmethod
    async def start(cls, connect: Connect) -> StallProxy:
        """A proxy on a loopback port to the server ``connect`` opens connections to."""
        proxy = cls(connect)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        down = asyncio.create_task(self._pipe(reader, up_writer, writer))
        up = asyncio.create_task(self._pipe(up_reader, writer, up_writer))
        self._pipes |= {down, up}
        down.add_done_callback(self._pipes.discard)
        up.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                if not self._flowing.is_set():
                    await self._flowing.wait()
                    if source.at_eof():
                        break  # its sender gave up while stalled: never deliver it
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side is gone: so is the other (dropping what was held back).
            for writer in (sink, other):
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()
