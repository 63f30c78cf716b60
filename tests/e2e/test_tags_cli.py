"""``pipetrail run --name/--tag``, ``pipetrail tag`` and ``pipetrail note`` in a subprocess."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_cli import cli, make_sample, sample

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e
__all__ = ["sample"]


def test_names_tags_and_notes_from_the_command_line(sample: Path) -> None:
    first = cli(sample, "run", "wc.py", "-q", "--name", "baseline", "--tag", "stage=dev", "--json")
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    assert json.loads(first.stdout)["tags"] == {"stage": "dev"}
    tagged = cli(sample, "tag", "latest", "owner=ana", "--remove", "stage", check=True)
    assert tagged.stdout.strip() == f"run {run_id}: owner=ana"
    assert cli(sample, "tag", run_id[:12], "--name", "renamed", check=True).returncode == 0
    noted = cli(sample, "note", "latest", "checked by hand [ok]", check=True)
    assert noted.stdout.strip() == f"noted on run {run_id}"
    listing = cli(sample, "runs", check=True).stdout
    assert "renamed" in listing
    assert "owner=ana" in listing
    shown = cli(sample, "show", "latest", check=True).stdout
    assert "name         renamed" in shown
    assert "tags         owner=ana" in shown
    assert "checked by hand [ok]" in shown
    summary = json.loads(cli(sample, "show", "latest", "--json", check=True).stdout)
    assert (summary["name"], summary["tags"], summary["purpose"]) == (
        "renamed",
        {"owner": "ana"},
        "run",
    )
    assert [n["text"] for n in summary["notes"]] == ["checked by hand [ok]"]
    assert cli(sample, "audit", "verify", check=True).returncode == 0


@pytest.fixture(scope="module")
def ran_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project after one untagged run, shared by the refusals (they record nothing)."""
    root = make_sample(tmp_path_factory.mktemp("refusals") / "sample")
    cli(root, "run", "wc.py", "-q", check=True)
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tag", "latest", "bad key=1"), "error: tag key 'bad key' is not valid"),
        (("tag", "latest", "stage"), "error: tag 'stage' must be KEY=VALUE"),
        (("tag", "latest"), "error: give tags as KEY=VALUE, --remove KEY or --name NAME"),
        (("tag", "latest", "--remove", "nope"), "has no tag 'nope'; its tags are: none"),
        (("tag", "ZZZZ", "a=b"), "error: no run matches 'ZZZZ'"),
        (("note", "latest", " "), "error: a note must be non-empty text"),
        (("run", "wc.py", "-q", "--tag", "1x=y"), "error: tag key '1x' is not valid"),
        (("run", "wc.py", "-q", "--name", ""), "error: a run name must be non-empty text"),
    ],
)
def test_bad_annotations_exit_2_with_one_message(
    ran_sample: Path, args: tuple[str, ...], message: str
) -> None:
    sample = ran_sample
    before = cli(sample, "audit", "verify", "--json", check=True).stdout
    result = cli(sample, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    after = cli(sample, "audit", "verify", "--json", check=True).stdout
    assert json.loads(after)["checked"] == json.loads(before)["checked"]  # nothing recorded
