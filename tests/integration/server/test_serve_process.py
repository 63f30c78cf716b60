"""`pipetrail serve` as a real process: uvicorn with two workers over the project, one
token, the API answering and refusing over real HTTP, and raw request targets that no
client library would send."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]


def _raw(base: str, target: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_server_answers_over_http_with_two_workers(served: Served, live_server: str) -> None:
    server = live_server
    auth = {"Authorization": f"Bearer {served.tokens['vic']}"}
    seen_runs = set()
    with httpx.Client(base_url=server, headers=auth, timeout=30) as client:
        for _ in range(20):  # spread over both workers
            answer = client.get("/api/v1/runs", params={"limit": 2})
            assert answer.status_code == 200, answer.text
            seen_runs.update(r["run_id"] for r in answer.json()["runs"])
        assert seen_runs == set(served.runs[1:])
        assert client.get(f"/api/v1/runs/{served.runs[0]}/steps").status_code == 200
        anonymous = httpx.get(server + "/api/v1/runs", timeout=30)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert "server" not in {k.lower() for k in anonymous.headers}
        big = client.post(
            "/api/v1/requests/req-00000000/approve",
            content=b"x" * (2 << 20),
            headers={"content-type": "application/json"},
        )
        assert big.status_code in (403, 413)  # vic may not approve; the size may be seen first
    # Request targets as they come over the wire, which no client library would send.
    _raw_traversal_targets_are_refused(server)


RAW_TARGETS = [
    b"/api/v1/runs/../../../etc/passwd",
    b"/api/v1/runs/..%2f..%2fetc%2fpasswd",
    b"/api/v1/runs/%2e%2e/%2e%2e/etc/passwd",
    b"/api/v1/artifacts/%00/content",
    b"/static/../../pipetrail.toml",
    b"/static/%2e%2e/%2e%2e/pipetrail.toml",
    b"/static/..%5c..%5cpipetrail.toml",
    b"/api/v1/lineage/up?ref=..%2f..%2fpipetrail.toml",
]


def _raw_traversal_targets_are_refused(server: str) -> None:
    for target in RAW_TARGETS:
        reply = _raw(server, target)
        status = int(reply.split(b" ", 2)[1])
        assert status in (400, 401, 404, 422), reply[:300]
        assert b"[pipetrail]" not in reply
        assert b"root:" not in reply
