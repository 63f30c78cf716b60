"""``pipetrail lineage --help`` shows the options of its default form, ``lineage REF``."""

from __future__ import annotations

from click.testing import CliRunner

from pipetrail.cli.lineage_cmd import lineage


def test_help_lists_the_default_form_s_options_once() -> None:
    shown = CliRunner().invoke(lineage, ["--help"], prog_name="pipetrail lineage")
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "Usage: pipetrail lineage REF [--up|--down]" in text
    assert "Options (pipetrail lineage REF ...):" in text
    for option in ("--up / --down", "--depth N", "--format [tree|json|dot|mermaid]", "--json"):
        assert f"  {option}" in text, option
    assert text.count("-h, --help") == 1
    options = text[text.index("Options (") : text.index("Commands:")]
    assert "REF\n" not in options  # the argument is in the usage line, not an option
    # The subcommands are still listed after the options.
    assert text.index("Options (") < text.index("Commands:") < text.index("  path ")


def test_the_subcommands_keep_their_own_help() -> None:
    shown = CliRunner().invoke(lineage, ["path", "--help"], prog_name="pipetrail lineage")
    assert shown.exit_code == 0, shown.output
    assert "--up" not in shown.output
    assert "--format" in shown.output
