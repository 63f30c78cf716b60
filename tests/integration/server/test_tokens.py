"""API tokens: issued to recorded users, stored only as digests, expiring, revocable; who may
issue, list and revoke which; the `pipetrail token` commands."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import GovernanceError, IdentityError, NotFoundError, PermissionDeniedError
from pipetrail.governance.tokens import (
    check_token,
    issue_token,
    parse_expiry,
    revoke_token,
    token_records,
)
from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def _database(served: Served) -> Path:
    url = served.project.config.metadata_url
    assert url.startswith("sqlite:///")
    from pathlib import Path

    return Path(url.removeprefix("sqlite:///"))


def test_only_the_digest_is_stored(served: Served) -> None:
    database = _database(served)
    raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())
    for token in served.tokens.values():
        # ptk_ + 12 hex digits of id + _ + 43 characters of secret (which may hold "_").
        secret = token[len("ptk_") + 13 :]
        assert len(secret) == 43
        assert secret.encode() not in raw
    with sqlite3.connect(_database(served)) as db:
        rows = db.execute("SELECT token_id, digest, user_name FROM api_tokens").fetchall()
    assert {r[2] for r in rows} == set(served.tokens)
    assert all(r[1].startswith("blake3:") for r in rows)


def test_an_expired_or_revoked_token_is_refused(served: Served) -> None:
    vic = served.client("vic")
    assert vic.get("/api/v1/me").status_code == 200
    with sqlite3.connect(_database(served)) as db:
        db.execute(
            "UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000000Z' "
            "WHERE user_name = 'vic'"
        )
    expired = vic.get("/api/v1/me")
    assert expired.status_code == 401
    assert f"token {served.token_ids['vic']} of vic is expired" in expired.json()["detail"]

    bob = served.client("bob")
    assert bob.get("/api/v1/me").status_code == 200
    revoked = revoke_token(served.gov("bob"), served.token_ids["bob"])  # their own
    assert revoked.revoked_by == "bob"
    answer = bob.get("/api/v1/me")
    assert answer.status_code == 401
    assert "is revoked" in answer.json()["detail"]


def test_a_revoked_role_is_refused_on_the_next_request(served: Served) -> None:
    vic = served.client("vic")
    assert vic.get("/api/v1/runs").status_code == 200
    served.gov("alice").revoke("vic", "viewer")
    assert vic.get("/api/v1/runs").status_code == 403


def test_who_may_issue_list_and_revoke(served: Served) -> None:
    rita = served.gov("rita")
    own = issue_token(rita, "rita", expires="12h")
    assert check_token(served.project.reader(), own.token).user == "rita"
    with pytest.raises(PermissionDeniedError, match="rita may not issue tokens of bob"):
        issue_token(rita, "bob")
    with pytest.raises(PermissionDeniedError, match="rita may not revoke tokens of bob"):
        revoke_token(rita, served.token_ids["bob"])
    assert {r.user for r in token_records(rita)} == {"rita"}
    assert {r.user for r in token_records(served.gov("alice"))} == {"alice", *served.tokens}
    with pytest.raises(IdentityError, match="'mallory' is not a user"):
        issue_token(served.gov("alice"), "mallory")
    with pytest.raises(NotFoundError, match="no token"):
        revoke_token(served.gov("alice"), "000000000000")
    with pytest.raises(NotFoundError, match="no token"):
        revoke_token(served.gov("alice"), "../../etc")


@pytest.mark.parametrize("text", ["0d", "30", "1y", "-1d", "400d", "53w", "d", " 5 d"])
def test_a_lifetime_must_be_a_bounded_duration(text: str) -> None:
    with pytest.raises(GovernanceError, match="token"):
        parse_expiry(text)


def test_lifetimes() -> None:
    assert parse_expiry("12h").total_seconds() == 12 * 3600
    assert parse_expiry("30D").days == 30
    assert parse_expiry("52w").days == 364


@pytest.mark.parametrize(
    "token", ["", "ptk_", "ptk_zzzzzzzzzzzz_" + "a" * 43, "x" * 60, "ptk_000000000000_" + "a" * 44]
)
def test_a_malformed_token_is_refused_without_a_query(served: Served, token: str) -> None:
    with pytest.raises(IdentityError, match="malformed"):
        check_token(served.project.reader(), token)


def _cli(served: Served, who: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PIPETRAIL_USER": who, "PIPETRAIL_HOME": str(home), "COLUMNS": "80"}
    return cli_inline(served.root, "token", *args, env=env)


@pytest.mark.e2e
def test_the_token_commands(served: Served) -> None:
    home = served.homes / "alice"
    made = _cli(served, "alice", home, "create", "--user", "vic", "--expires", "2d", "--json")
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert issued["user"] == "vic"
    assert check_token(served.project.reader(), issued["token"]).token_id == issued["token_id"]
    plain = _cli(served, "alice", home, "create", "--user", "vic")
    assert plain.stdout.startswith("ptk_")
    assert "cannot be shown again" in plain.stderr

    listed = _cli(served, "alice", home, "list", "--json")
    rows = json.loads(listed.stdout)
    assert issued["token_id"] in {r["token_id"] for r in rows}
    assert "token" not in rows[0]
    assert issued["token"] not in listed.stdout

    revoked = _cli(served, "alice", home, "revoke", issued["token_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert f"token {issued['token_id']} of vic revoked" in revoked.stdout
    with pytest.raises(IdentityError, match="revoked"):
        check_token(served.project.reader(), issued["token"])

    # Bad input: a message, no traceback, exit 2 (bad input) or 7 (refused).
    for args, code, words in (
        (("create", "--user", "vic", "--expires", "forever"), 2, "not a token lifetime"),
        (("create", "--user", "ghost"), 2, "'ghost' is not a user"),
        (("revoke", "ffffffffffff"), 2, "no token"),
        (("list", "--user", "vic"), 0, ""),
    ):
        result = _cli(served, "alice", home, *args)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    # Without the key, a name alone issues nothing.
    stranger = _cli(served, "alice", served.homes / "nobody", "create", "--user", "alice")
    assert stranger.returncode == 2
    rita = _cli(served, "rita", served.signing, "create", "--user", "bob")
    assert rita.returncode == 7
    assert "rita may not issue tokens of bob" in rita.stderr
    assert "no signing key" in stranger.stderr
