"""Pairing the nodes of two runs: by name, by step and params through the wiring, ties."""

from __future__ import annotations

from typing import Any

from pipetrail.execution.node_pairing import NodePair, RecordedNode, pair_nodes


def node(
    node_id: str,
    *,
    params: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    upstream: tuple[str, ...] | None = (),
    name: str | None = None,
) -> RecordedNode:
    step = node_id.split("[", 1)[0].rsplit("/", 1)[-1]
    return RecordedNode(
        node_id=node_id,
        step=step,
        name=name,
        params=params or {},
        inputs=inputs or {},
        outputs={"output": f"blake3:{node_id}:{sorted((params or {}).items())}"},
        upstream=upstream,
    )


def fan_out(kinds: list[str], *, named: bool = False, run: str = "") -> list[RecordedNode]:
    """load -> train(kind) -> evaluate, one branch per kind, as a loop builds them."""
    nodes = [node("load")]
    for i, kind in enumerate(kinds):
        suffix = f"[{kind}]" if named else ("" if i == 0 else f"[{i}]")
        train = node(
            "train" + suffix,
            params={"kind": kind},
            inputs={"rows": nodes[0].outputs["output"]},
            upstream=("load",),
            name=kind if named else None,
        )
        evaluate = node(
            "evaluate" + ("" if i == 0 else f"[{i}]"),
            inputs={"model": train.outputs["output"] + run},
            upstream=(train.node_id,),
        )
        # The model digest differs between runs (run): pairing must not rely on it.
        evaluate = RecordedNode(**{**evaluate.__dict__, "outputs": {"output": "e" + kind + run}})
        train = RecordedNode(
            **{**train.__dict__, "outputs": {"output": train.outputs["output"] + run}}
        )
        nodes += [train, evaluate]
    return nodes


def test_a_grown_list_pairs_by_params_not_position() -> None:
    a = fan_out(["lr", "rf"], run="a")
    b = fan_out(["svm", "lr", "rf"], run="b")
    result = pair_nodes(a, b)
    assert {(p.a, p.b) for p in result.pairs} == {
        ("load", "load"),
        ("train", "train[1]"),
        ("evaluate", "evaluate[1]"),
        ("train[1]", "train[2]"),
        ("evaluate[1]", "evaluate[2]"),
    }
    assert all(p.by == "params" for p in result.pairs)
    assert result.added == ("train", "evaluate")
    assert result.removed == ()
    assert result.ambiguous == ()


def test_a_reordered_list_pairs_the_same_configurations() -> None:
    result = pair_nodes(fan_out(["lr", "rf", "svm"], run="a"), fan_out(["svm", "lr", "rf"]))
    pairs = {(p.a, p.b) for p in result.pairs}
    assert ("train", "train[1]") in pairs  # lr
    assert ("train[2]", "train") in pairs  # svm
    assert ("evaluate[2]", "evaluate") in pairs  # follows its producer
    assert result.added == result.removed == ()


def test_named_nodes_pair_by_name_and_their_consumers_follow() -> None:
    # Every kind's params changed, so only the names tell the calls apart.
    a = fan_out(["lr", "rf"], named=True, run="a")
    b = fan_out(["lr", "rf"], named=True, run="b")
    b = [
        RecordedNode(**{**n.__dict__, "params": {"kind": n.params["kind"], "C": 2}})
        if n.step == "train"
        else n
        for n in b
    ]
    result = pair_nodes(a, b)
    assert NodePair("train[lr]", "train[lr]", "name") in result.pairs
    assert NodePair("train[rf]", "train[rf]", "name") in result.pairs
    assert NodePair("evaluate", "evaluate", "params") in result.pairs
    assert NodePair("evaluate[1]", "evaluate[1]", "params") in result.pairs
    assert result.ambiguous == ()


def test_renamed_nodes_with_the_same_configuration_pair_by_params() -> None:
    a = [node("load"), node("train[x]", params={"C": 1}, upstream=("load",), name="x")]
    b = [node("load"), node("train[y]", params={"C": 1}, upstream=("load",), name="y")]
    result = pair_nodes(a, b)
    assert NodePair("train[x]", "train[y]", "params") in result.pairs


def test_differently_named_nodes_with_changed_params_do_not_pair() -> None:
    a = [node("train[x]", params={"C": 1}, name="x")]
    b = [node("train[y]", params={"C": 2}, name="y")]
    result = pair_nodes(a, b)
    assert result.pairs == ()
    assert result.removed == ("train[x]",)
    assert result.added == ("train[y]",)


def test_the_one_call_of_a_step_pairs_although_its_params_changed() -> None:
    a = [node("load"), node("train", params={"C": 1}, inputs={"r": "d"}, upstream=("load",))]
    b = [node("load"), node("train", params={"C": 2}, inputs={"r": "d"}, upstream=("load",))]
    result = pair_nodes(a, b)
    assert NodePair("train", "train", "step") in result.pairs


def test_identical_unnamed_calls_are_ambiguous_and_so_are_their_consumers() -> None:
    def run() -> list[RecordedNode]:
        nodes = [node("load")]
        for i in range(2):
            t = node("boot" + ("" if i == 0 else f"[{i}]"), params={"n": 3}, upstream=("load",))
            nodes.append(t)
        return nodes

    result = pair_nodes(run(), run())
    assert [p.a for p in result.pairs] == ["load"]
    (group,) = result.ambiguous
    assert group.step == "boot"
    assert group.a == group.b == ("boot", "boot[1]")
    assert "name the calls" in group.reason
    assert result.added == result.removed == ()
    assert result.ambiguity_of("boot[1]", side="b") is group


def test_several_changed_calls_of_one_step_are_a_tie_not_a_guess() -> None:
    a = [node("train", params={"C": 1}), node("train[1]", params={"C": 2})]
    b = [node("train", params={"C": 5}), node("train[1]", params={"C": 6})]
    result = pair_nodes(a, b)
    assert result.pairs == ()
    (group,) = result.ambiguous
    assert (group.a, group.b) == (("train", "train[1]"), ("train", "train[1]"))
    assert "differ in params" in group.reason


def test_one_candidate_against_two_identical_ones_is_ambiguous() -> None:
    a = [node("train", params={"C": 1})]
    b = [node("train", params={"C": 1}), node("train[1]", params={"C": 1})]
    result = pair_nodes(a, b)
    assert result.pairs == ()
    assert result.ambiguous[0].b == ("train", "train[1]")


def test_steps_only_in_one_run_are_added_or_removed() -> None:
    a = [node("load"), node("old", upstream=("load",))]
    b = [node("load"), node("new", upstream=("load",))]
    result = pair_nodes(a, b)
    assert result.removed == ("old",)
    assert result.added == ("new",)
    assert result.to_dict()["added"] == ["new"]


def test_sources_pair_by_path_not_digest() -> None:
    a = [node("read", inputs={"p": "blake3:s1"}), node("read[1]", inputs={"p": "blake3:s2"})]
    b = [node("read", inputs={"p": "blake3:t2"}), node("read[1]", inputs={"p": "blake3:t1"})]
    result = pair_nodes(
        a,
        b,
        sources_a={"blake3:s1": "one.csv", "blake3:s2": "two.csv"},
        sources_b={"blake3:t1": "one.csv", "blake3:t2": "two.csv"},
    )
    assert {(p.a, p.b) for p in result.pairs} == {("read", "read[1]"), ("read[1]", "read")}


def test_unrecorded_wiring_is_inferred_from_digests() -> None:
    a = fan_out(["lr", "rf"], run="a")
    b = fan_out(["rf", "lr"], run="b")
    strip = [RecordedNode(**{**n.__dict__, "upstream": None}) for n in a]
    result = pair_nodes(strip, [RecordedNode(**{**n.__dict__, "upstream": None}) for n in b])
    assert NodePair("evaluate", "evaluate[1]", "params") in result.pairs
    assert NodePair("evaluate[1]", "evaluate", "params") in result.pairs
