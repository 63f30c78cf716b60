"""A promotion request raises ``promotion.requested`` on each metadata backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from pipetrail.ledger.event_reads import run_events
from pipetrail.ledger.event_records import AlertDelivery
from tests.integration.test_governance import TRAIN
from tests.support.receiver import Receiver, receiving
from tests.support.team import Team

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from receiving()


def test_a_promotion_request_is_sent_and_recorded(
    metadata_url: str, files: PipelineFiles, project_root: Path, receiver: Receiver
) -> None:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n'
        f'[[alerts.rules]]\nname = "approvers"\non = ["promotion.requested"]\n'
        f'webhook = "{receiver.url}/approvers"\nformat = "slack"\n'
    )
    project = Project.at(project_root)
    try:
        fit = files.load(f"fit_{abs(hash(metadata_url)) % 10**8}", TRAIN)
        run_id = run_pipeline(fit, {}, project, RunOptions()).id
        team = Team(project, project_root.parent / "homes")
        team.key("alice")
        team.as_("alice").bootstrap()
        team.as_("alice").add_user("rita", team.key("rita"), roles=("researcher",))
        team.as_("rita").register("churn", f"{run_id}:train")
        request = team.as_("rita").request_promotion(
            "churn", 1, "production", rationale="better recall", risk="low"
        )
        [post] = receiver.posts
        text = post["json"]["text"]
        assert text == (
            f"pipetrail promotion.requested: promotion of churn:1 to production requested "
            f"({request['request_id']}, risk low): better recall"
        )
        [delivery] = [
            e
            for e in run_events(project.reader(), [run_id], [EventKind.ALERT_SENT])
            if isinstance(e, AlertDelivery)
        ]
        assert (delivery.rule, delivery.event, delivery.run_id) == (
            "approvers", "promotion.requested", run_id,
        )  # fmt: skip
    finally:
        project.close()
