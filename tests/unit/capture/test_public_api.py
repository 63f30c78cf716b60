from __future__ import annotations

import importlib

import pipetrail.capture

_MODULES = [
    "distributions",
    "environment",
    "environment_diff",
    "file_memo",
    "git",
    "git_probe",
    "listing_memo",
    "log_context",
    "log_lines",
    "output",
    "owner",
    "resources",
    "s3_source",
    "seeds",
    "source_checks",
    "source_walk",
    "sources",
    "statcache",
]


def test_all_is_sorted_and_resolves() -> None:
    names = pipetrail.capture.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(pipetrail.capture, name) is not None


def test_all_lists_every_public_name() -> None:
    # Names are imported on first use (lazily): what is already there is in __all__, and
    # dir() lists all of them, imported or not.
    public = {name for name in vars(pipetrail.capture) if not name.startswith("_")}
    public -= {"annotations", *_MODULES}
    assert public <= set(pipetrail.capture.__all__)
    listed = {name for name in dir(pipetrail.capture) if not name.startswith("_")}
    assert listed - {"annotations", *_MODULES} == set(pipetrail.capture.__all__)


def test_reexports_come_from_their_defining_module() -> None:
    for module_name in _MODULES:
        module = importlib.import_module(f"pipetrail.capture.{module_name}")
        assert module.__doc__
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            if name in pipetrail.capture.__all__:
                assert getattr(pipetrail.capture, name) is getattr(module, name)
