"""Key encryption keys from a key file, the environment, or a plugin."""

from __future__ import annotations

import base64
import os
import stat
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import StoreError
from pipetrail.store.key_providers import (
    EnvironmentKey,
    KeyFile,
    KeyProvider,
    key_id,
    load_provider,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_a_key_file_is_private_rotates_and_keeps_old_keys(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys" / "kek")
    first = keys.create()
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    kid, key = keys.current()
    assert kid == first == key_id("file", key)
    assert first.startswith("file:")
    assert base64.b64encode(key) not in kid.encode()
    with pytest.raises(StoreError, match="exists already"):
        keys.create()
    old, new = keys.rotate()
    assert old == first
    assert keys.current()[0] == new != first
    assert keys.get(first) == key
    with pytest.raises(StoreError, match="is not in the key file"):
        keys.get("file:0000000000000000")
    keys.path.chmod(0o640)
    with pytest.raises(StoreError, match="chmod 600"):
        keys.current()


def test_a_missing_or_malformed_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no key file at"):
        KeyFile(tmp_path / "absent").current()
    bad = tmp_path / "bad"
    bad.write_text("not a key\n")
    bad.chmod(0o600)
    with pytest.raises(StoreError, match="does not hold a 256-bit key"):
        KeyFile(bad).current()


def test_an_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_KEK", raising=False)
    provider = EnvironmentKey("TEST_KEK")
    with pytest.raises(StoreError, match="TEST_KEK is not set"):
        provider.current()
    key = os.urandom(32)
    monkeypatch.setenv("TEST_KEK", base64.b64encode(key).decode())
    kid, found = provider.current()
    assert found == key
    assert provider.get(kid) == key
    with pytest.raises(StoreError, match="is not in the environment variable TEST_KEK"):
        provider.get("env:ffffffffffffffff")
    monkeypatch.setenv("TEST_KEK", "c2hvcnQ=")
    with pytest.raises(StoreError, match="256-bit key"):
        provider.current()


def test_providers_by_name_including_a_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(load_provider("file", {}, default_file=tmp_path / "k"), KeyFile)
    chosen = load_provider("file", {"path": str(tmp_path / "elsewhere")}, default_file=tmp_path)
    assert isinstance(chosen, KeyFile)
    assert chosen.path == tmp_path / "elsewhere"
    assert isinstance(load_provider("env", {}, default_file=tmp_path), EnvironmentKey)
    with pytest.raises(StoreError, match="unknown key provider 'vault'"):
        load_provider("vault", {}, default_file=tmp_path)

    # a plugin, installed as a distribution with an entry point
    site = tmp_path / "site"
    (site / "fakekms-1.0.dist-info").mkdir(parents=True)
    (site / "fakekms-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakekms\nVersion: 1.0\n"
    )
    (site / "fakekms-1.0.dist-info" / "entry_points.txt").write_text(
        "[pipetrail.key_providers]\nfakekms = fakekms:Provider\n"
    )
    (site / "fakekms.py").write_text(
        textwrap.dedent(
            """
            class Provider:
                def __init__(self, secret):
                    self.secret = bytes.fromhex(secret)
                def current(self):
                    return "fakekms:1", self.secret
                def get(self, kek_id):
                    return self.secret
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    provider = load_provider("fakekms", {"secret": "ab" * 32}, default_file=tmp_path)
    assert isinstance(provider, KeyProvider)
    assert provider.current() == ("fakekms:1", bytes.fromhex("ab" * 32))
    sys.modules.pop("fakekms", None)
