"""The pool's capacity and each local Dask worker's resources, from ``[executor.resources]``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.config import load_config
from pipetrail.errors import ProjectError
from pipetrail.execution.executors import resolve_executor
from pipetrail.execution.executors.capacity import describe, machine_capacity, shortfall
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.executors.processes import ProcessExecutor

if TYPE_CHECKING:
    from pathlib import Path


def _resolve(tmp_path: Path, name: str, table: str):  # type: ignore[no-untyped-def]
    (tmp_path / "pipetrail.toml").write_text(
        f'[pipetrail]\nexecutor = "{name}"\n[executor]\nworkers = 2\n{table}'
    )
    return resolve_executor(None, load_config(root=tmp_path))


def test_the_table_sets_the_pools_capacity(tmp_path: Path) -> None:
    executor = _resolve(
        tmp_path, "processes", '[executor.resources]\ncpu = 6\nmemory = "8GiB"\ngpu = 1\n'
    )
    assert isinstance(executor, ProcessExecutor)
    assert executor.capacity == {"cpu": 6, "memory": 8 * 1024**3, "gpu": 1}
    assert executor.settings() == {"workers": 2, "capacity": "cpu 6, gpu 1, memory 8.0 GiB"}


def test_a_local_dask_cluster_declares_it_per_worker(tmp_path: Path) -> None:
    executor = _resolve(tmp_path, "dask", "[executor.resources]\ngpu = 2\n")
    assert isinstance(executor, DaskExecutor)
    declared = executor._local_resources()
    assert declared["gpu"] == 2
    assert declared["cpu"] >= 1  # its share of the machine, as nothing else is declared


def test_a_bad_key_is_refused_naming_the_table(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"\[executor.resources\]: unknown resource 'disk'"):
        _resolve(tmp_path, "processes", '[executor.resources]\ndisk = "1TB"\n')
    with pytest.raises(ProjectError, match=r"resource 'memory' must be a size"):
        _resolve(tmp_path, "dask", '[executor.resources]\nmemory = "lots"\n')


def test_the_machine_is_the_default_and_never_smaller_than_the_pool() -> None:
    capacity = machine_capacity(workers=64)
    assert capacity["cpu"] >= 64
    assert capacity["gpu"] == 0


def test_shortfall_names_what_is_missing() -> None:
    assert shortfall({"cpu": 2, "gpu": 1}, {"cpu": 4}) == ["gpu 1 (has 0)"]
    assert shortfall({"memory": 2 * 1024**3}, {"memory": 1024**3}) == [
        "memory 2.0 GiB (has 1.0 GiB)"
    ]
    assert shortfall({"cpu": 1}, {"cpu": 1}) == []
    assert describe({}) == "nothing"
