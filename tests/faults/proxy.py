"""A small asyncio TCP proxy put in front of the broker or the database to inject network faults.

Modes: `pass`, `latency` (delay every chunk), `blackhole` (a partition: connections are accepted but nothing flows
either way until the mode changes, when the held bytes flow again, as TCP retransmission delivers them after a
partition heals), `reset` (cut every connection with a TCP RST), `refuse` (stop listening: connection refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "latency", "blackhole", "reset", "refuse"]


class TCPProxy:
    def __init__(self, upstream_port: int, *, listen_port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = listen_port
        self.mode: Mode = "pass"
        self.latency = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._flowing = asyncio.Event()
        self._flowing.set()

    def start(self) -> TCPProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close_all(listening=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set_mode(self, mode: Mode, latency: float = 0.0) -> None:
        """Switch modes; `reset` and `refuse` also cut the connections already open."""
        self.latency = latency
        previous, self.mode = self.mode, mode
        self._loop.call_soon_threadsafe(self._flowing.clear if mode == "blackhole" else self._flowing.set)
        if mode in ("reset", "refuse"):
            self._call(self._close_all(listening=mode == "refuse"))
        elif previous == "refuse":
            self._call(self._listen())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self, *, listening: bool) -> None:
        if listening and self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()  # a partition holds the bytes in the kernel's buffers
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                if self.mode == "latency" and self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST
    with contextlib.suppress(Exception):
        writer.close()
