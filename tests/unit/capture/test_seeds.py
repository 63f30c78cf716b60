from __future__ import annotations

import random
import re
import sys
import types

import numpy as np
import pytest
from blake3 import blake3

from pipetrail.capture import seeds
from pipetrail.capture.seeds import (
    MAX_SEED,
    apply_seed,
    derive_seed,
    held_states,
    new_run_seed,
    seeded,
    validate_seed,
)
from pipetrail.errors import ParamError


def test_derived_seeds_are_pinned() -> None:
    # Golden values: changing them changes every recorded run's step seeds.
    assert derive_seed(0, "train") == 1755412985
    assert derive_seed(42, "train") == 961926019
    assert derive_seed(42, "train[1]") == 2639311556
    assert derive_seed(MAX_SEED, "") == 1856408307


def test_derivation_follows_the_documented_recipe() -> None:
    encoded = b'pt-c1\x00["pipetrail.derive_seed/1",42,"train"]'
    assert derive_seed(42, "train") == int.from_bytes(blake3(encoded).digest()[:4], "big")


def test_a_derived_seed_is_the_same_computed_again_or_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = derive_seed(42, "train")
    assert derive_seed(42, "train") == first == 961926019  # remembered
    monkeypatch.setattr(seeds, "_DERIVED", {})
    assert derive_seed(42, "train") == first  # computed again
    monkeypatch.setattr(seeds, "_DERIVED_MAX", 2)
    values = [derive_seed(42, f"s{i}") for i in range(5)]
    assert len(seeds._DERIVED) <= 2  # bounded
    assert [derive_seed(42, f"s{i}") for i in range(5)] == values
    assert derive_seed(43, "train") != first  # the run seed is part of what is remembered


def test_derived_seeds_are_in_range_and_distinct() -> None:
    derived = {derive_seed(7, f"step{i}") for i in range(1000)}
    assert len(derived) == 1000
    assert all(0 <= s <= MAX_SEED for s in derived)
    assert derive_seed(7, "a") != derive_seed(8, "a")


@pytest.mark.parametrize(
    ("run_seed", "key"), [(-1, "a"), (2**32, "a"), (True, "a"), (1, 2), (1, None)]
)
def test_derive_seed_rejects_bad_input(run_seed: object, key: object) -> None:
    with pytest.raises(ParamError):
        derive_seed(run_seed, key)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 1, MAX_SEED, np.int64(5), np.uint32(MAX_SEED)])
def test_validate_seed_accepts_integers_in_range(value: object) -> None:
    assert validate_seed(value) == int(value)  # type: ignore[call-overload]
    assert type(validate_seed(value)) is int


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-1, "-1 (int)"),
        (2**32, "4294967296 (int)"),
        (True, "True (bool)"),
        (1.0, "1.0 (float)"),
        ("42", "'42' (str)"),
        (None, "None (NoneType)"),
    ],
)
def test_validate_seed_rejects_with_a_clear_message(value: object, shown: str) -> None:
    expected = f"seed must be an integer between 0 and 4294967295, got {shown}"
    with pytest.raises(ParamError, match="^" + re.escape(expected)):
        validate_seed(value)


def test_new_run_seed_is_random_and_valid() -> None:
    values = {new_run_seed() for _ in range(50)}
    assert len(values) > 45
    assert all(validate_seed(v) == v for v in values)


def test_apply_seed_makes_random_and_numpy_reproducible() -> None:
    assert apply_seed(123)[:2] == ["random", "numpy"]
    first = (random.random(), np.random.rand())
    apply_seed(123)
    assert (random.random(), np.random.rand()) == first
    apply_seed(124)
    assert random.random() != first[0]


def test_apply_seed_seeds_torch_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    fake_torch = types.ModuleType("torch")
    fake_torch.manual_seed = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake_torch)

    assert apply_seed(5) == ["random", "numpy", "torch"]
    assert calls == [5]


def test_apply_seed_rejects_out_of_range() -> None:
    with pytest.raises(ParamError, match="got -5"):
        apply_seed(-5)


def test_a_library_the_step_uses_is_imported_and_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    calls: list[int] = []
    fake_torch = types.ModuleType("torch")
    fake_torch.manual_seed = calls.append  # type: ignore[attr-defined]
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(seeds.importlib.util, "find_spec", lambda name: object())
    real_import = importlib.import_module
    monkeypatch.setattr(
        seeds.importlib,
        "import_module",
        lambda name: fake_torch if name == "torch" else real_import(name),
    )
    assert "torch" not in apply_seed(9)  # not imported, not used: left alone
    assert apply_seed(9, uses=["torch", "pandas"])[-1] == "torch"
    assert calls == [9]


def test_a_used_library_that_is_not_installed_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(seeds.importlib.util, "find_spec", lambda name: None)
    assert "torch" not in apply_seed(1, uses=["torch"])


def test_seeded_puts_the_states_back_after_the_block() -> None:
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)

    with seeded(123) as names:
        assert names[:2] == ["random", "numpy"]
        inside = (random.random(), np.random.rand())

    assert (random.random(), np.random.rand()) == expected
    with seeded(123):
        assert (random.random(), np.random.rand()) == inside


def test_seeded_puts_the_states_back_when_the_block_raises() -> None:
    random.seed(11)
    expected = random.random()
    random.seed(11)

    def interrupted_step() -> None:
        with seeded(5):
            random.random()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_step()
    assert random.random() == expected


def test_seeded_restores_torch_without_touching_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCuda:
        calls: list[str] = []  # noqa: RUF012 - shared by design in this fake

        def is_available(self) -> bool:
            return True

        def is_initialized(self) -> bool:
            return False

        def get_rng_state_all(self) -> list[str]:
            self.calls.append("get")
            return []

    fake_torch = types.ModuleType("torch")
    state = {"value": "before"}
    fake_torch.manual_seed = lambda seed: state.update(value=f"seed {seed}")  # type: ignore[attr-defined]
    fake_torch.get_rng_state = lambda: state["value"]  # type: ignore[attr-defined]
    fake_torch.set_rng_state = lambda value: state.update(value=value)  # type: ignore[attr-defined]
    fake_torch.cuda = FakeCuda()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake_torch)

    with seeded(3) as names:
        assert names[-1] == "torch"
        assert state["value"] == "seed 3"
    assert state["value"] == "before"
    assert FakeCuda.calls == []


def _torch_imported_on_use(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A stand-in for PyTorch, installed but not imported: imported when seeds asks for it.

    Returns its generator's state, a one-entry dict (``"fresh"`` until seeded).
    """
    import importlib

    state = {"value": "fresh"}
    fake_torch = types.ModuleType("torch")
    fake_torch.manual_seed = lambda seed: state.update(value=f"seed {seed}")  # type: ignore[attr-defined]
    fake_torch.get_rng_state = lambda: state["value"]  # type: ignore[attr-defined]
    fake_torch.set_rng_state = lambda value: state.update(value=value)  # type: ignore[attr-defined]
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(seeds.importlib.util, "find_spec", lambda name: object())
    real_import = importlib.import_module

    def fake_import(name: str) -> types.ModuleType:
        if name == "torch":
            sys.modules["torch"] = fake_torch
            return fake_torch
        return real_import(name)

    monkeypatch.setattr(seeds.importlib, "import_module", fake_import)
    return state


def test_a_library_seeded_because_used_keeps_its_fresh_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _torch_imported_on_use(monkeypatch)
    with seeded(4, uses=["torch"]) as names:
        assert "torch" in names
        assert state["value"] == "seed 4"
    assert state["value"] == "fresh"


def _stream() -> tuple[float, float]:
    return (random.random(), random.random())


def test_a_run_keeps_the_states_once_and_puts_them_back_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    random.seed(31)
    np.random.seed(32)
    expected = (_stream(), np.random.random())
    random.seed(31)
    np.random.seed(32)
    saves = []
    real_getstate = random.getstate

    def counting() -> object:
        saves.append(1)
        return real_getstate()

    monkeypatch.setattr(random, "getstate", counting)
    inside = []
    with held_states():
        for seed in (5, 6, 5):
            with seeded(seed) as names:
                assert names[:2] == ["random", "numpy"]
                inside.append((_stream(), np.random.random()))

        def failing() -> None:
            with seeded(7):
                random.random()
                _ = 1 / 0

        with pytest.raises(ZeroDivisionError):
            failing()
    assert saves == [1]  # once for the run, not once a block
    assert inside[0] == inside[2] != inside[1]  # each block still seeded at its start
    random.seed(5)
    np.random.seed(5)
    assert inside[0] == (_stream(), np.random.random())
    # ... and the same seed outside a run gives what it gave inside.
    random.seed(31)
    np.random.seed(32)
    with held_states():
        with seeded(9):
            _stream()
        with seeded(10):
            np.random.random()
    assert (_stream(), np.random.random()) == expected


def test_runs_nest_and_each_puts_back_what_its_caller_was_using() -> None:
    random.seed(41)
    first = random.random()
    expected_outer = random.random()
    random.seed(41)
    with held_states(), seeded(3):
        random.random()
        inner_caller = random.getstate()
        with held_states(), seeded(4):  # a run started inside a step
            random.random()
        assert random.getstate() == inner_caller
    assert random.random() == first
    assert random.random() == expected_outer


def test_a_library_a_held_block_imports_is_put_back_to_its_fresh_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = _torch_imported_on_use(monkeypatch)
    with held_states():
        with seeded(1):
            pass
        with seeded(4, uses=["torch"]) as names:
            assert "torch" in names
        assert state["value"] == "seed 4"  # left as the block left it until the run ends
        with seeded(5):
            assert state["value"] == "seed 5"
    assert state["value"] == "fresh"


def test_blocks_in_another_thread_keep_their_own_states() -> None:
    import threading

    got: list[bool] = []

    def other() -> None:
        random.seed(8)
        before = random.getstate()
        with seeded(2):
            random.random()
        got.append(random.getstate() == before)

    with held_states():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert got == [True]
