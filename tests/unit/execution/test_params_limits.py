"""Params past the limits (depth, size, YAML aliases) are refused at once, in one line."""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.core.param_limits import MAX_DEPTH, MAX_TEXT_BYTES, check_params_limits
from pipetrail.core.params import parse_text
from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import ParamError, ParamsFileError
from pipetrail.execution.params_files import (
    MAX_FILE_BYTES,
    load_params_file,
    resolve_run_params,
)
from pipetrail.execution.params_yaml import MAX_ALIAS_NODES

if TYPE_CHECKING:
    from pathlib import Path


@step
def use(x: Any) -> int:
    return 1


def takes_list(x: list[Any] | None = None) -> Any:
    return use(x)


def takes_any(x: Any = None) -> Any:
    return use(x)


LIST = PipelineDefinition(takes_list)
ANY = PipelineDefinition(takes_any)

# Nine aliases of nine aliases ...: 9**9 (387 million) strings once expanded.
BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
x: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def nested_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- nesting depth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("deep.json", '{"x":\n' + nested(5000) + "}", 2),
        ("deep.toml", "a = 1\nx = " + nested(5000) + "\n", 2),
        ("deep.yaml", "a: 1\nx: " + nested(5000) + "\n", 2),
        (
            "deep-block.yaml",
            "".join(f"{' ' * i}k{i}:\n" for i in range(150)) + " " * 150 + "v: 1\n",
            None,
        ),
        # Just past the limit, where the parsers cope and only the check refuses.
        ("over.json", '{"x": ' + nested(MAX_DEPTH) + "}", 1),
        ("over.toml", "x = " + nested(MAX_DEPTH) + "\n", 1),
    ],
)
def test_a_file_nested_past_the_limit_is_refused_naming_file_and_line(
    tmp_path: Path, name: str, text: str, line: int | None
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ParamsFileError) as caught:
        load_params_file(path)
    message = str(caught.value)
    assert message.startswith(f"params file {path}")
    assert f"the limit of {MAX_DEPTH} levels" in message
    assert "\n" not in message
    if line is not None:
        assert caught.value.line == line
        assert f"line {line}" in message


def test_a_file_at_the_limit_is_accepted(tmp_path: Path) -> None:
    # The top-level table is the first level.
    path = write(tmp_path, "ok.json", '{"x": ' + nested(MAX_DEPTH - 1) + "}")
    assert load_params_file(path).data["x"] == nested_list(MAX_DEPTH - 1)
    yaml_path = write(tmp_path, "ok.yaml", "x: " + nested(MAX_DEPTH - 1) + "\n")
    assert load_params_file(yaml_path).data == load_params_file(path).data


@pytest.mark.parametrize("definition", [LIST, ANY], ids=["list", "any"])
def test_an_override_nested_past_the_limit_is_refused_naming_the_key(
    definition: PipelineDefinition,
) -> None:
    for value in (nested(5000), nested(MAX_DEPTH), nested_list(500)):
        with pytest.raises(ParamError, match=r"parameter 'x' .*the limit of 100 levels") as caught:
            resolve_run_params(definition, {"x": value})
        assert "override (-p or run() argument)" in str(caught.value)
    assert resolve_run_params(LIST, {"x": nested(MAX_DEPTH - 1)})["x"] is not None


def test_a_dotted_key_with_too_many_parts_is_refused() -> None:
    with pytest.raises(ParamError, match="5000 dotted parts"):
        resolve_run_params(ANY, {".".join(["a"] * 5000): 1})


def test_a_value_that_refers_to_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ParamError, match="nested deeper"):
        check_params_limits({"x": loop}, origin="test")


def test_parse_text_refuses_deep_json_instead_of_recursing() -> None:
    with pytest.raises(ParamError, match="holds JSON nested deeper than the limit of 100 levels"):
        parse_text(nested(100_000))


# -- size -------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("w") as out:
        out.write('{"x": "')
        out.write("a" * MAX_FILE_BYTES)
        out.write('"}')
    with pytest.raises(ParamsFileError, match=r"larger than the limit of 10 MiB") as caught:
        load_params_file(path)
    assert str(caught.value).startswith(f"params file {path} ")


def test_a_text_value_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=r"parameter 'x' is 1\.0 MiB of text, over the limit"):
        resolve_run_params(ANY, {"x": "a" * (MAX_TEXT_BYTES + 1)})
    path = write(tmp_path, "p.yaml", "x:\n  - " + "b" * (MAX_TEXT_BYTES + 1) + "\n")
    with pytest.raises(
        ParamsFileError, match=r"parameter 'x' is 1\.0 MiB of text, .* \(at 'x\[0\]'\)"
    ):
        load_params_file(path)
    assert resolve_run_params(ANY, {"x": "a" * MAX_TEXT_BYTES})["x"]


# -- YAML aliases -----------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_quickly_and_in_little_memory(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.yaml", BOMB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ParamsFileError) as caught:
            resolve_run_params(ANY, {}, [load_params_file(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 20 * 1024 * 1024
    message = str(caught.value)
    assert message.startswith(f"params file {path}, line ")
    assert f"more than {MAX_ALIAS_NODES} values" in message
    assert caught.value.line is not None


def test_a_yaml_alias_to_its_own_node_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "x: &a\n  - 1\n  - *a\n")
    with pytest.raises(ParamsFileError, match="alias \\*a refers to the node that holds it"):
        load_params_file(path)


def test_aliases_that_nest_past_the_limit_are_refused(tmp_path: Path) -> None:
    # Each anchor holds the previous one: few nodes, but deep once expanded.
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 120)]
    path = write(tmp_path, "deep-aliases.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ParamsFileError, match="nested deeper than the limit of 100 levels"):
        load_params_file(path)


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = "base: &base {lr: 1, n: 2}\nx:\n  <<: *base\n  n: 3\ny: [*base, *base]\n"
    data = load_params_file(write(tmp_path, "p.yaml", text)).data
    assert data["x"] == {"lr": 1, "n": 3}
    assert data["y"] == [{"lr": 1, "n": 2}, {"lr": 1, "n": 2}]
