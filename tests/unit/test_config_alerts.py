"""``[alerts]`` in pipetrail.toml: validated by the config model, one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetrail.config_model import validate_settings
from pipetrail.errors import ProjectError
from pipetrail.observability.alerts import AlertSettings, load_alerts

RULE = '[[alerts.rules]]\nname = "ops"\non = ["run.failed"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (RULE + 'webhook = "http://h"\nformat = "xml"\n',
         """'alerts.rules[1].format' must be "json" or "slack", got 'xml'"""),
        ('[[alerts.rules]]\nname = "a"\non = ["run.exploded"]\nwebhook = "http://h"\n',
         "'alerts.rules[1].on[1]' must be one of 'run.failed', 'drift.detected'"),
        (RULE + 'webhook = "http://h"\ncommand = ["x"]\n',
         "[alerts.rules[1]] rule 'ops' must have exactly one of webhook, webhook_env or "
         "command (found: webhook, command)"),
        (RULE, "must have exactly one of webhook, webhook_env or command (found: none)"),
        (RULE + 'webhook = "ftp://h"\n',
         "'alerts.rules[1].webhook' must be an http:// or https:// URL in quotes, got 'ftp://h'"),
        (RULE + 'webhook = "http://h"\nurl = "y"\n',
         "unknown key 'alerts.rules[1].url'; the known keys of [alerts.rules[1]] are name, on"),
        ("[alerts]\nretries = -1\n", "'alerts.retries' must be a whole number from 0 to 10"),
        ("[alerts]\ndeviation_factor = 1\n", "'alerts.deviation_factor' must be a number above 1"),
        (RULE + 'webhook = "http://h"\n' + RULE + 'command = ["x"]\n',
         "rule names must be unique; 'ops' name more than one rule"),
        (RULE + 'command = ["x"]\nformat = "slack"\n', "format applies to webhooks only"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        validate_settings(Path("pipetrail.toml"), "[pipetrail]\n" + text, {})
    assert message in str(caught.value)
    assert str(caught.value).startswith("pipetrail.toml: ")
    assert str(caught.value).endswith("; fix the file")


def test_rules_load_with_their_defaults(tmp_path: Path) -> None:
    assert load_alerts(tmp_path) is None
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n\n[alerts]\nretries = 1\n")
    assert load_alerts(tmp_path) is None  # no rule: nothing to send
    (tmp_path / "pipetrail.toml").write_text(
        "[alerts]\nbackoff = 0\n" + RULE + 'command = ["notify"]\npipelines = ["train"]\n'
    )
    settings = load_alerts(tmp_path)
    assert isinstance(settings, AlertSettings)
    assert (settings.retries, settings.backoff, settings.timeout) == (3, 0.0, 5.0)
    [rule] = settings.rules
    assert rule["command"] == ["notify"]
    assert [r["name"] for r in settings.listening("run.failed", "train")] == ["ops"]
    assert settings.listening("run.failed", "other") == []
    assert settings.listening("gate.failed", "train") == []
