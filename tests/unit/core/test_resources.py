"""Resource requests: ``@step(resources=...)`` and ``with_options(resources=...)``."""

from __future__ import annotations

import pytest

from pipetrail import pipeline, step
from pipetrail.core.resources import parse_memory, parse_resources, resources_dict
from pipetrail.errors import DefinitionError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 1024**3),
        ("512 MiB", 512 * 1024**2),
        ("2GB", 2 * 1000**3),
        ("1.5KiB", 1536),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_memory_sizes(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["4 gigs", "GiB", "-1GiB", "0", 0, True, None, "4G"])
def test_bad_memory_sizes(bad: object) -> None:
    assert parse_memory(bad) is None


def test_a_step_records_its_normalized_request() -> None:
    @step(resources={"memory": "1GiB", "cpu": 2, "gpu": 1})
    def train(x: int) -> int:
        return x

    assert train.options.resources == (("cpu", 2), ("gpu", 1), ("memory", 1024**3))
    assert resources_dict(train.options.resources) == {"cpu": 2, "gpu": 1, "memory": 1024**3}
    # A request for no GPU is no request.
    assert parse_resources("x", {"gpu": 0, "cpu": 0.5}) == (("cpu", 0.5),)


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"cpus": 2}, ["step 'train'", "unknown resource 'cpus'", "cpu, memory, gpu"]),
        ({"memory": "4 gigs"}, ["step 'train'", "'memory'", "4GiB", "'4 gigs'"]),
        ({"cpu": 0}, ["step 'train'", "'cpu'", "above 0"]),
        ({"cpu": "2"}, ["step 'train'", "'cpu'"]),
        ({"gpu": 1.5}, ["step 'train'", "'gpu'", "whole number"]),
        ({"gpu": -1}, ["step 'train'", "'gpu'"]),
        ([("cpu", 1)], ["step 'train'", "must be a mapping"]),
    ],
)
def test_bad_requests_name_the_step_and_the_key(resources: object, words: list[str]) -> None:
    with pytest.raises(DefinitionError) as caught:

        @step(resources=resources)  # type: ignore[arg-type]
        def train(x: int) -> int:
            return x

    for word in words:
        assert word in str(caught.value)


def test_with_options_validates_its_request() -> None:
    @step
    def one(x: int) -> int:
        return x

    @pipeline
    def flow(x: int = 1) -> int:
        return one(x)

    runner = flow.with_options(resources={"cpu": 1, "memory": "2GiB"})
    assert runner.options.resources == (("cpu", 1), ("memory", 2 * 1024**3))
    with pytest.raises(DefinitionError, match=r"with_options: unknown resource 'disk'"):
        flow.with_options(resources={"disk": "1GiB"})
