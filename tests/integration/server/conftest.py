"""A governed project served by the real application: runs, a model, users and tokens.

alice is the first admin; rita a researcher, bob and carol approvers, vic a viewer and
nora a user with no role. Each has a key in a folder of their own, except rita and bob,
who gave theirs to the server's key folder (``--signing-keys``), so the server signs
their acts. Each has an API token.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.testclient import TestClient

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.service import Governance
from pipetrail.governance.tokens import issue_token
from pipetrail.server.app import create_app
from pipetrail.server.context import ServerSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from fastapi import FastAPI
    from playwright.sync_api import Browser, Page

    from tests.integration.conftest import PipelineFiles
    from tests.support.seaweedfs import SeaweedServer

TRAIN = """
from pipetrail import pipeline, step, log_metric

@step
def prepare(rows: int = 10) -> list:
    print("preparing", rows, "rows")
    return list(range(rows))

@step(resources={"memory": "64MiB"})
def train(data: list, auc: float = 0.97) -> dict:
    for i in range(3):
        log_metric("loss", 1.0 / (i + 1), step=i)
    return {"roc_auc": auc, "rows": len(data)}

@pipeline
def fit(rows: int = 10, auc: float = 0.97):
    return train(prepare(rows), auc)
"""

PEOPLE = {
    "rita": ["researcher"],
    "bob": ["approver"],
    "carol": ["approver"],
    "vic": ["viewer"],
    "nora": [],
}
SERVER_HELD = ("rita", "bob")


@dataclass
class Served:
    """The project, its app, each person's token and the ids of its runs."""

    root: Path
    project: Project
    app: FastAPI
    tokens: dict[str, str]
    token_ids: dict[str, str]
    runs: list[str]
    signing: Path
    homes: Path

    def client(self, who: str | None = None) -> TestClient:
        client = TestClient(self.app, base_url="https://testserver")
        if who is not None:
            client.headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return client

    def gov(self, who: str) -> Governance:
        folder = self.signing if who in SERVER_HELD else self.homes / who
        return Governance(self.project, signer=load_signer(who, folder=folder))


@pytest.fixture
def served(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[Served]:
    yield from _serve(files, project_root, unique, "")


@pytest.fixture
def served_on_postgres(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str], postgres_url: str
) -> Iterator[Served]:
    """The same project with its ledger in PostgreSQL."""
    yield from _serve(files, project_root, unique, f'metadata = "{postgres_url}"\n')


@pytest.fixture
def served_on_s3(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    seaweed: SeaweedServer,
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Served]:
    """The same project with its store in a real S3 bucket (SeaweedFS)."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    yield from _serve(files, project_root, unique, f'store = "{s3_url}"\n')


def _serve(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str], settings: str
) -> Iterator[Served]:
    (project_root / "pipetrail.toml").write_text(
        f"[pipetrail]\n{settings}\n[promotion.production]\napprovals = 1\n"
    )
    project = Project.at(project_root)
    fit = files.load(unique("fit"), TRAIN)
    runs = [
        run_pipeline(fit, {"rows": rows, "auc": auc}, project, RunOptions()).id
        for rows, auc in ((10, 0.97), (12, 0.91), (12, 0.99))
    ]
    homes = project_root.parent / "homes"
    signing = project_root.parent / "server-keys"
    keys = {}
    for name in ("alice", *PEOPLE):
        folder = signing if name in SERVER_HELD else homes / name
        keys[name] = create_key(name, folder=folder).text
    alice = Governance(project, signer=load_signer("alice", folder=homes / "alice"))
    alice.bootstrap()
    for name, roles in PEOPLE.items():
        alice.add_user(name, keys[name], roles=tuple(roles))
    tokens, token_ids = {}, {}
    for name in ("alice", *PEOPLE):
        issued = issue_token(alice, name, expires="1d", label=f"{name}'s test token")
        tokens[name], token_ids[name] = issued.token, issued.token_id
    app = create_app(ServerSettings(root=project_root, signing_keys=signing))
    yield Served(project_root, project, app, tokens, token_ids, runs, signing, homes)
    project.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live_server(served: Served) -> Iterator[str]:
    """`pipetrail serve` with two workers over the project; its base URL."""
    port = _free_port()
    env = {**os.environ, "PIPETRAIL_HOME": str(served.homes / "alice")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipetrail.cli.main", "serve", "--port", str(port),
         "--workers", "2", "--signing-keys", str(served.signing)],
        cwd=served.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/login", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None:
                pytest.fail(f"pipetrail serve ended: {process.stdout.read()}")  # type: ignore[union-attr]
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("pipetrail serve did not answer within 60 s")
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    process.stdout.close()  # type: ignore[union-attr]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def log_in(browser: Browser, base: str, token: str) -> Page:
    """A new browser context logged in at ``base`` with ``token``."""
    context = browser.new_context(base_url=base, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")
    return page
