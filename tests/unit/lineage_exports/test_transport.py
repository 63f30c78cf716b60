"""Sending to a collector that misbehaves: real local servers that trickle or flood.

The deadline covers the whole request, not each socket operation, and only a bounded
part of an answer is read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.lineage.exports.transport import (
    MAX_ERROR_DETAIL,
    CollectorError,
    OpenLineageHttpEmitter,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

EVENT = {"eventType": "START", "job": {"name": "train"}, "run": {"runId": "r"}}


class RawServer:
    """A one-thread TCP server answering each request with ``answer(conn)``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            _read_request(conn)
            with contextlib.suppress(OSError):  # the client hung up, as it should
                self.answer(conn)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=30)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[RawServer, socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[RawServer, socket.socket], None]) -> RawServer:
        server = RawServer(lambda conn: answer(server, conn))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _trickle(
    seconds: float, head: bytes, tail: bytes
) -> Callable[[RawServer, socket.socket], None]:
    def answer(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, head)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            server.send(conn, b"a")  # each byte well within a per-operation timeout
            time.sleep(0.05)
        server.send(conn, tail)

    return answer


def test_a_collector_trickling_its_headers_misses_the_whole_request_deadline(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(
        _trickle(8.0, b"HTTP/1.1 201 Created\r\nX-Slow: ", b"\r\nContent-Length: 0\r\n\r\n")
    )
    emitter = OpenLineageHttpEmitter(server.url, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(CollectorError, match=r"did not take the START event .* within 1 s"):
        emitter.emit(EVENT)
    assert time.monotonic() - started < 3.0


def test_a_collector_trickling_an_error_body_still_gives_the_status_in_time(
    serve: Callable[..., RawServer],
) -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000000\r\n\r\nbroken"
    server = serve(_trickle(8.0, head, b""))
    started = time.monotonic()
    with pytest.raises(CollectorError, match="HTTP 500") as caught:
        OpenLineageHttpEmitter(server.url, timeout=1.0).emit(EVENT)
    assert time.monotonic() - started < 3.0
    assert "\n" not in str(caught.value)


def test_a_huge_answer_is_not_read(serve: Callable[..., RawServer]) -> None:
    size = 256 * 1024 * 1024

    def flood(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, f"HTTP/1.1 201 Created\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 65536
        while server.sent < size:
            server.send(conn, chunk)

    server = serve(flood)
    started = time.monotonic()
    OpenLineageHttpEmitter(server.url, timeout=30.0).emit(EVENT)
    server.close()  # waits for the server to notice that the client hung up
    assert time.monotonic() - started < 10.0
    # What the kernel's socket buffers took, no more: the client read only the headers.
    assert server.sent < 32 * 1024 * 1024


def test_a_huge_error_answer_is_read_only_in_part(serve: Callable[..., RawServer]) -> None:
    size = 256 * 1024 * 1024

    def flood(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, f"HTTP/1.1 400 Bad Request\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"y" * 65536
        while server.sent < size:
            server.send(conn, chunk)

    server = serve(flood)
    with pytest.raises(CollectorError, match="HTTP 400") as caught:
        OpenLineageHttpEmitter(server.url, timeout=30.0).emit(EVENT)
    server.close()
    assert str(caught.value).endswith("y" * MAX_ERROR_DETAIL)
    assert server.sent < 32 * 1024 * 1024


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_the_timeout_must_be_a_positive_number_of_seconds(timeout: float) -> None:
    with pytest.raises(CollectorError, match="positive number of seconds"):
        OpenLineageHttpEmitter("http://127.0.0.1:9", timeout=timeout)


def _workers_left(seconds: float) -> list[threading.Thread]:
    """The sending threads still alive after up to ``seconds``."""
    stop = time.monotonic() + seconds
    while True:
        alive = [t for t in threading.enumerate() if t.name == "pipetrail-openlineage"]
        if not alive or time.monotonic() > stop:
            return alive
        time.sleep(0.05)


def test_a_long_retry_after_does_not_outlast_the_deadline(
    serve: Callable[..., RawServer],
) -> None:
    def busy(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\n")
        server.send(conn, b"Content-Length: 4\r\n\r\nbusy")

    server = serve(busy)
    started = time.monotonic()
    with pytest.raises(CollectorError) as caught:
        OpenLineageHttpEmitter(server.url, timeout=1.0).emit(EVENT)
    assert time.monotonic() - started < 3.0
    assert str(caught.value) == (
        f"the OpenLineage collector at {server.url}/api/v1/lineage refused the START event "
        "of job 'train'; no better answer came within 1 s: HTTP 503 Service Unavailable"
    )
    assert _workers_left(2.0) == []  # the backoff sleep ended with the deadline


def test_a_trickling_collector_leaves_no_sending_thread_behind(
    serve: Callable[..., RawServer],
) -> None:
    server = serve(_trickle(8.0, b"HTTP/1.1 201 Created\r\nX-Slow: ", b"\r\n\r\n"))
    with pytest.raises(CollectorError, match="within 1 s"):
        OpenLineageHttpEmitter(server.url, timeout=1.0, retries=0).emit(EVENT)
    assert _workers_left(2.0) == []  # its socket was shut down at the deadline


def test_a_refused_connection_is_one_line_after_the_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CollectorError) as caught:
        OpenLineageHttpEmitter(f"http://127.0.0.1:{port}", retries=2, backoff=0.01).emit(EVENT)
    assert str(caught.value) == (
        f"cannot send the START event of job 'train' to the OpenLineage collector at "
        f"http://127.0.0.1:{port}/api/v1/lineage: [Errno 111] Connection refused; check the "
        "URL and that the collector is running"
    )


@pytest.mark.parametrize(("retries", "backoff"), [(-1, 0.3), (101, 0.3), (True, 0.3), (1, -1.0)])
def test_retry_settings_are_checked(retries: int, backoff: float) -> None:
    with pytest.raises(CollectorError, match=r"retries must be|backoff must be"):
        OpenLineageHttpEmitter("http://127.0.0.1:9", retries=retries, backoff=backoff)
