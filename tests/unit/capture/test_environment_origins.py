"""Install origins (PEP 610 direct_url.json) and the Linux distribution in snapshots."""

from __future__ import annotations

import json
import platform
from typing import Any

import pytest

from pipetrail.capture import distributions, environment
from pipetrail.capture.environment import capture_environment, list_distributions


class FakeDist:
    def __init__(self, direct_url: Any) -> None:
        self.text = direct_url if isinstance(direct_url, str | None) else json.dumps(direct_url)

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, None),
        ("not json", None),
        ({"no": "url"}, None),
        (
            {"url": "file:///src/pkg", "dir_info": {"editable": True}},
            {"url": "file:///src/pkg", "editable": True},
        ),
        ({"url": "file:///src/pkg", "dir_info": {}}, {"url": "file:///src/pkg"}),
        (
            {
                "url": "https://user:token@github.com/acme/lib.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc123", "requested_revision": "v1"},
                "subdirectory": "python",
            },
            {
                "url": "https://github.com/acme/lib.git",
                "vcs": "git",
                "commit_id": "abc123",
                "requested_revision": "v1",
                "subdirectory": "python",
            },
        ),
        (
            {"url": "https://x.org/a-1.0.tar.gz", "archive_info": {"hashes": {"sha256": "ff"}}},
            {"url": "https://x.org/a-1.0.tar.gz", "archive_hash": "sha256=ff"},
        ),
        (
            {"url": "https://x.org/a-1.0.tar.gz", "archive_info": {"hash": "sha256=ee"}},
            {"url": "https://x.org/a-1.0.tar.gz", "archive_hash": "sha256=ee"},
        ),
    ],
)
def test_direct_url_summary(data: Any, expected: dict[str, Any] | None) -> None:
    assert distributions._direct_url(FakeDist(data)) == expected


def test_credentials_never_reach_the_record() -> None:
    assert distributions._without_credentials("https://u:p@h.org/x?y") == "https://h.org/x?y"
    assert distributions._without_credentials("file:///a@b/c") == "file:///a@b/c"
    assert distributions._without_credentials("plain") == "plain"


def test_this_editable_checkout_is_recorded_with_its_origin() -> None:
    found = {d["name"]: d for d in list_distributions()}
    origin = found["pipetrail"].get("direct_url")
    if origin is None:
        pytest.skip("pipetrail is not installed from a direct URL here")
    assert origin["url"].startswith("file://")


def test_distro_from_os_release(monkeypatch: pytest.MonkeyPatch) -> None:
    release = {
        "ID": "debian",
        "VERSION_ID": "12",
        "VERSION_CODENAME": "bookworm",
        "PRETTY_NAME": "D",
    }
    monkeypatch.setattr(platform, "freedesktop_os_release", lambda: release)
    assert environment._distro() == {
        "id": "debian",
        "version_id": "12",
        "codename": "bookworm",
        "name": "D",
    }

    def missing() -> dict[str, str]:
        raise OSError("no os-release")

    monkeypatch.setattr(platform, "freedesktop_os_release", missing)
    assert environment._distro() is None
    assert "distro" not in capture_environment()["os"]
