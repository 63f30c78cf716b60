"""Bad input: a corpus of path traversal and encoding variants in every path and query
parameter, oversized and malformed bodies, CSRF, login forgery. Each is refused with the
right status as a problem document, nothing outside the project is opened, and the
refusal is logged."""

from __future__ import annotations

import itertools
import re
import sys
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import pytest

from pipetrail.server.auth import csrf_token

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration

# -- the corpus ----------------------------------------------------------------------
# Payloads sent to the server (never opened here): {out} is a folder beside the project.
PLACES = {"up6": "../" * 6, "tilde": "~"}
BASES = [
    "../{out}/secret.txt",
    "../../{out}/secret.txt",
    "{up6}{out}/secret.txt",
    "..",
    "../",
    "/{out}/secret.txt",
    "....//....//{out}/secret.txt",
    "..\\..\\{out}\\secret.txt",
    "./../{out}",
    "{out}/../../secret.txt",
    "latest/../../{out}",
    "/etc/passwd",
    "..;/{out}/secret.txt",
    ".../{out}/secret.txt",
    "{tilde}/../{out}",
    "file:///etc/passwd",
    "\\\\server\\share\\{out}",
    "C:\\Windows\\win.ini",
    "../{out}/secret.txt.png",
    "..//..//{out}//secret.txt",
    "/./../{out}/secret.txt",
    "..\\/{out}/secret.txt",
    ". ./. ./{out}",
    "{out}/secret.txt/..",
]
UNICODE_DOTS = ["\uff0e", "\u2024", "\u2025", "\ufe52", "\u3002"]
UNICODE_SLASHES = ["\uff0f", "\u2215", "\u2044", "\u29f8", "\uff3c"]


def _pct_all(text: str) -> str:
    return "".join(f"%{b:02x}" for b in text.encode("utf-8"))


def _encodings(text: str) -> list[str]:
    """The text as a URL component, encoded in the ways an attacker tries (raw target text)."""
    once = quote(text, safe="")
    out = [
        quote(text, safe="/\\"),  # slashes as they are
        once,  # everything special percent-encoded
        once.lower(),
        _pct_all(text),  # every byte encoded
        quote(once, safe=""),  # double
        quote(quote(once, safe=""), safe=""),  # triple
        quote(text, safe="/").replace("..", "%2e%2e"),
        quote(text, safe="/").replace("..", "%2E%2e"),
        quote(text, safe="").replace("%2F", "%5C"),  # backslashes for slashes
        quote(text, safe="/").replace("../", "%c0%ae%c0%ae%c0%af"),  # overlong UTF-8
        quote(text, safe="/").replace("../", "%e0%80%ae%e0%80%ae/"),
        quote(text + "\x00", safe="/"),  # NUL at the end
        quote(text + "\x00.json", safe="/"),
        quote("\x00" + text, safe=""),
        quote(text, safe="/") + "%00",
        quote(text, safe="/") + ";x=1",
        quote(text + "\n", safe="/"),
        quote(text + "\r\nX-Injected: 1", safe="/"),
        quote(text, safe="/").replace("/", "%2f%2f"),
        quote(text, safe="/").replace("/", "/./"),
    ]
    for dot, slash in zip(UNICODE_DOTS, UNICODE_SLASHES, strict=True):
        look = text.replace(".", dot).replace("/", slash)
        out.append(quote(look, safe=""))
        out.append(quote(look.replace(slash, "/"), safe="/"))
    return out


def corpus(outside: str) -> list[str]:
    """At least 500 distinct raw (already encoded) parameter values."""
    seen: dict[str, None] = {}
    for base in BASES:
        for variant in _encodings(base.format(out=outside, **PLACES)):
            seen.setdefault(variant, None)
    return list(seen)


# -- sending raw targets to the app (no client normalizes them) ------------------------
def _call(
    app: FastAPI, method: str, raw_target: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw_target`` exactly as a server would hand it to the app (like uvicorn)."""
    from urllib.parse import unquote

    raw_path, _, query = raw_target.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    status = 0
    response_headers: dict[str, str] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {
            "type": "http.request",
            "body": b"{}" if method == "POST" else b"",
            "more_body": False,
        }

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(
                {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            )
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    async def main() -> None:
        await app(scope, receive, send)

    anyio.run(main)
    return status, response_headers, bytes(body)


def _targets(served: Served, value: str) -> list[tuple[str, str]]:
    """(method, raw target) with ``value`` in each path parameter and each query parameter."""
    valid = {
        "run_ref": served.runs[0],
        "step": "train",
        "ref": f"{served.runs[0]}:train.output",
        "direction": "up",
        "model": "churn",
        "version": "1",
        "request_id": "req-00000000",
    }
    found = []
    for route in served.app.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        path: str = route.path  # type: ignore[attr-defined]
        method = sorted(route.methods)[0]  # type: ignore[attr-defined]
        names = re.findall(r"\{(\w+)\}", path)
        base = re.sub(r"\{(\w+)\}", lambda m: valid[m.group(1)], path)
        for name in names:
            target = path
            for other in names:
                target = target.replace("{" + other + "}", value if other == name else valid[other])
            found.append((method, target))
        for param in dependant.query_params:
            found.append((method, f"{base}?{param.alias}={value}"))
    return found


@pytest.fixture
def outside(served: Served) -> Iterator[tuple[str, Path, list[str]]]:
    """A secret beside the project, and every file the process opens under its folder."""
    name = f"outside-{uuid.uuid4().hex[:8]}"
    folder = served.root.parent / name
    folder.mkdir()
    secret = f"TOP-SECRET-{uuid.uuid4().hex}"
    (folder / "secret.txt").write_text(secret)
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event == "open" and name in str(args[0]):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # hooks cannot be removed; this one stops watching below
    yield secret, folder, opened
    watching[0] = False


if TYPE_CHECKING:
    from collections.abc import Iterator


def test_the_traversal_corpus_is_refused_everywhere(
    served: Served, outside: tuple[str, Path, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    secret, folder, opened = outside
    values = corpus(folder.name)
    assert len(values) >= 500
    positions = _targets(served, "VALUE")
    assert len(positions) >= 40
    auth = {"authorization": f"Bearer {served.tokens['alice']}", "content-type": "application/json"}
    sent = 0
    statuses: dict[int, int] = {}
    # Each variant in three parameters, the parameters taking turns: every parameter
    # gets a share of every kind of variant.
    turns = itertools.cycle(positions)
    for value in values:
        for method, template in (next(turns), next(turns), next(turns)):
            target = template.replace("VALUE", value)
            status, headers, body = _call(served.app, method, target, auth)
            assert status in (400, 404, 422), (target, status, body[:300])
            assert headers["content-type"] == "application/problem+json", (target, body[:200])
            assert secret.encode() not in body
            statuses[status] = statuses.get(status, 0) + 1
            sent += 1
    assert opened == []
    assert sent >= 1500
    assert {400, 404, 422} <= set(statuses)
    assert sum(r.getMessage().startswith("refused") for r in caplog.records) >= sent * 0.99


def test_oversized_bodies_are_refused_before_a_route_reads_them(served: Served) -> None:
    bob = served.client("bob")
    big = b'{"comment": "' + b"x" * (2 << 20) + b'"}'
    sized = bob.post(
        "/api/v1/requests/req-00000000/approve",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert sized.status_code == 413
    assert sized.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    streamed = bob.post(
        "/api/v1/requests/req-00000000/approve",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert "larger than this server accepts" in streamed.json()["detail"]


def test_malformed_and_misfit_bodies(served: Served) -> None:
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    rita = served.client("rita")
    url = "/api/v1/models/churn/versions/1/promotions"
    before = served.project.reader().event_count()
    good = '"alias": "production", "rationale": "r", "risk": "low"'
    for body, status, words in (
        (b'{"alias": "production",', 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b"[]", 422, "body"),
        (("{" + good + ', "x": 1}').encode(), 422, "x"),
        (b'{"alias": "../prod", "rationale": "r", "risk": "low"}', 422, "alias"),
        (b'{"alias": "production", "rationale": "", "risk": "low"}', 422, "rationale"),
        (b'{"alias": "production", "rationale": "r", "risk": "none"}', 422, "risk"),
        (b"alias=production", 415, "JSON"),
    ):
        ctype = "application/json" if status != 415 else "application/x-www-form-urlencoded"
        answer = rita.post(url, content=body, headers={"content-type": ctype})
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"], (body, answer.text)
    assert served.project.reader().event_count() == before
    assert rita.post("/api/v1/models/churn/versions/0/promotions", json={}).status_code == 422
    assert (
        rita.post(
            "/api/v1/models/ghost/versions/1/promotions",
            json={"alias": "production", "rationale": "r", "risk": "low"},
        ).status_code
        == 404
    )


def _login(served: Served, who: str) -> Any:
    client = served.client()
    form = client.get("/login")
    assert form.status_code == 200
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert value is not None
    answer = client.post(
        "/login",
        data={"token": served.tokens[who], "login_csrf": value.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client, answer


def test_the_session_cookie_and_csrf(served: Served) -> None:
    client, answer = _login(served, "bob")
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "SameSite=strict" in cookie
    assert client.get("/").status_code == 200
    me = client.get("/api/v1/me").json()
    assert me["user"] == "bob"
    assert me["csrf_token"] == csrf_token(served.tokens["bob"])

    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    opened = (
        served.client("rita")
        .post(
            "/api/v1/models/churn/versions/1/promotions",
            json={"alias": "production", "rationale": "r", "risk": "low"},
        )
        .json()
    )
    approve = f"/api/v1/requests/{opened['request_id']}/approve"
    before = served.project.reader().event_count()
    for headers in (
        {},
        {"X-CSRF-Token": "0" * 64},
        {"X-CSRF-Token": csrf_token(served.tokens["vic"])},
    ):
        refused = client.post(approve, json={}, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.json()["detail"]
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert served.project.reader().event_count() == before
    done = client.post(approve, json={"comment": "ok"}, headers={"X-CSRF-Token": me["csrf_token"]})
    assert done.status_code == 200, done.text
    out = client.post("/logout", data={"csrf_token": me["csrf_token"]}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_a_forged_or_failed_login(served: Served) -> None:
    client = served.client()
    forged = client.post(
        "/login", data={"token": served.tokens["bob"], "login_csrf": "x"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert "pipetrail_session" not in forged.headers.get("set-cookie", "")
    found = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/login").text)
    assert found is not None
    wrong = client.post(
        "/login", data={"token": "ptk_bad", "login_csrf": found.group(1)}, follow_redirects=False
    )
    assert wrong.status_code == 401
    assert "malformed" in wrong.text
    assert client.get("/").status_code == 401
