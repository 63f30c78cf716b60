from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipetrail.capture import distributions, environment
from pipetrail.capture.environment import (
    ENV_VAR_ALLOWLIST,
    capture_environment,
    environment_digest,
    list_distributions,
)
from pipetrail.hashing import canonical_json, is_digest

_OLD = 1_000_000_000  # seconds since the epoch: far outside the racy window


def make_dist(site: Path, name: str, version: str, *, dir_name: str | None = None) -> Path:
    dist = site / (dir_name or f"{name.replace('-', '_')}-{version}.dist-info")
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"
        "Version: 9.9 (in the description, not a header)\n",
        encoding="utf-8",
    )
    return dist


def set_mtime(path: Path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An old-looking site directory, alone on sys.path, holding one distribution.

    Alone, so that the cache key depends on nothing the test does not control (the real
    sys.path directories may be modified by anything, at any time).
    """
    site = tmp_path / "site"
    site.mkdir()
    set_mtime(make_dist(site, "Fake_Pkg", "1.0"), _OLD)
    set_mtime(site, _OLD)
    monkeypatch.setattr(sys, "path", [str(site)])
    return site


@pytest.fixture
def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = distributions._listing

    def counting(scanned: Any) -> list[dict[str, str]]:
        calls.append(1)
        return real(scanned)

    monkeypatch.setattr(distributions, "_listing", counting)
    return calls


def versions(snapshot: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d["version"] for d in snapshot["distributions"]}


def test_snapshot_has_the_documented_shape() -> None:
    snapshot = capture_environment()

    assert snapshot["schema_version"] == 1
    assert set(snapshot) == {
        "schema_version",
        "python",
        "os",
        "cpu",
        "memory",
        "gpu",
        "distributions",
        "env_vars",
    }
    python = snapshot["python"]
    assert python["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert python["executable"] == sys.executable
    assert python["prefix"] == sys.prefix
    assert python["implementation"]
    assert {"system", "release", "version", "machine", "platform"} <= set(snapshot["os"])
    assert snapshot["cpu"]["logical_cores"] == os.cpu_count()
    assert "model" in snapshot["cpu"]
    assert isinstance(snapshot["gpu"], list)
    # JSON-able, and canonical: the digest is defined.
    assert json.loads(json.dumps(snapshot)) == snapshot
    canonical_json(snapshot)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux facts")
def test_linux_facts() -> None:
    snapshot = capture_environment()
    assert snapshot["os"]["system"] == "Linux"
    assert snapshot["memory"]["total_bytes"] > 0
    if Path("/proc/cpuinfo").exists():
        assert snapshot["cpu"]["model"] is None or snapshot["cpu"]["model"].strip()


def test_distributions_are_every_installed_one_normalized_sorted_unique() -> None:
    import importlib.metadata

    listed = list_distributions()
    names = [d["name"] for d in listed]

    assert names == sorted(set(names))
    assert all(name == name.lower() and "_" not in name and "." not in name for name in names)
    by_name = {d["name"]: d["version"] for d in listed}
    assert by_name["pytest"] == importlib.metadata.version("pytest")
    assert by_name["blake3"] == importlib.metadata.version("blake3")
    expected = {
        distributions._NORMALIZE_RE.sub("-", d.metadata["Name"]).lower()
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    assert set(names) == expected


def test_header_parsing_ignores_the_description_and_normalizes_names(fake_site: Path) -> None:
    assert versions({"distributions": list_distributions()})["fake-pkg"] == "1.0"


def test_first_sys_path_entry_wins_for_duplicates(
    fake_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = tmp_path / "later-site"
    make_dist(later, "fake.pkg", "0.5")
    monkeypatch.setattr(sys, "path", [*sys.path, str(later)])

    listed = list_distributions()

    assert [d["version"] for d in listed if d["name"] == "fake-pkg"] == ["1.0"]


def test_env_vars_are_limited_to_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VAR_ALLOWLIST:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-record")

    assert capture_environment()["env_vars"] == {"OMP_NUM_THREADS": "3", "PYTHONHASHSEED": "0"}


def test_digest_is_stable_and_follows_content() -> None:
    snapshot = capture_environment()
    digest = environment_digest(snapshot)

    assert is_digest(digest)
    assert environment_digest(json.loads(json.dumps(snapshot))) == digest
    env_vars = snapshot["env_vars"]
    changed = {**snapshot, "env_vars": {**env_vars, "TZ": env_vars.get("TZ", "") + "x"}}
    assert environment_digest(changed) != digest


def test_cache_is_written_then_used(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    cache = tmp_path / "cache"

    first = capture_environment(cache_dir=cache)
    second = capture_environment(cache_dir=cache)

    assert len(count_listings) == 1
    assert (cache / "distributions.json").is_file()
    assert first["distributions"] == second["distributions"]
    assert versions(second)["fake-pkg"] == "1.0"


def test_cache_is_invalidated_when_a_distribution_is_upgraded(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    cache = tmp_path / "cache"
    assert versions(capture_environment(cache_dir=cache))["fake-pkg"] == "1.0"
    assert (cache / "distributions.json").is_file()

    # An upgrade: pip removes the old .dist-info and adds the new one (mtimes pinned
    # here to old values, outside the racy window).
    for dist in fake_site.glob("*.dist-info"):
        for child in dist.iterdir():
            child.unlink()
        dist.rmdir()
    set_mtime(make_dist(fake_site, "Fake_Pkg", "2.0"), _OLD + 60)
    set_mtime(fake_site, _OLD + 60)

    after = capture_environment(cache_dir=cache)

    assert versions(after)["fake-pkg"] == "2.0"
    assert len(count_listings) == 2
    capture_environment(cache_dir=cache)
    assert len(count_listings) == 2  # the new listing was cached in turn


def test_cache_sees_a_legacy_egg_info_rewritten_in_place(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    egg_info = fake_site / "legacy.egg-info"
    egg_info.mkdir()
    pkg_info = egg_info / "PKG-INFO"
    pkg_info.write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 1.0\n")
    set_mtime(pkg_info, _OLD)
    set_mtime(egg_info, _OLD)
    set_mtime(fake_site, _OLD)
    cache = tmp_path / "cache"
    assert versions(capture_environment(cache_dir=cache))["legacy"] == "1.0"
    assert (cache / "distributions.json").is_file()

    # `setup.py develop` after a version bump: same file rewritten, no directory changes.
    pkg_info.write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 2.0\n")
    set_mtime(pkg_info, _OLD + 60)
    set_mtime(egg_info, _OLD)

    assert versions(capture_environment(cache_dir=cache))["legacy"] == "2.0"
    assert len(count_listings) == 2


def test_a_reinstall_of_the_same_version_is_seen(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    cache = tmp_path / "cache"
    capture_environment(cache_dir=cache)
    # `pip install --force-reinstall`: the same folder name, a new folder (new inode).
    (old,) = fake_site.glob("*.dist-info")
    old.rename(tmp_path / "moved-away")
    set_mtime(make_dist(fake_site, "Fake_Pkg", "1.0"), _OLD)
    set_mtime(fake_site, _OLD)  # even with the folder's mtime as it was

    capture_environment(cache_dir=cache)
    assert len(count_listings) == 2


def test_other_files_beside_the_packages_keep_the_cache(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    cache = tmp_path / "cache"
    capture_environment(cache_dir=cache)
    # A project's own files (its folder is on sys.path while its pipeline runs).
    (fake_site / "results.csv").write_text("a,b\n")
    (fake_site / "notebooks").mkdir()

    capture_environment(cache_dir=cache)
    assert len(count_listings) == 1


def test_a_folder_without_packages_on_the_path_is_fine(
    fake_site: Path, tmp_path: Path, count_listings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pipeline.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(project), *sys.path])
    cache = tmp_path / "cache"

    assert versions(capture_environment(cache_dir=cache))["fake-pkg"] == "1.0"
    capture_environment(cache_dir=cache)
    assert len(count_listings) == 1


def test_cache_is_invalidated_when_sys_path_changes(
    fake_site: Path, tmp_path: Path, count_listings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    capture_environment(cache_dir=cache)
    assert (cache / "distributions.json").is_file()
    other = tmp_path / "other-site"
    set_mtime(make_dist(other, "another", "3.1"), _OLD)
    set_mtime(other, _OLD)
    monkeypatch.setattr(sys, "path", [str(other), *sys.path])

    assert versions(capture_environment(cache_dir=cache))["another"] == "3.1"
    assert len(count_listings) == 2


def test_a_listing_of_a_just_modified_dir_is_not_cached(
    fake_site: Path, tmp_path: Path, count_listings: list[int]
) -> None:
    cache = tmp_path / "cache"
    now = time.time_ns()
    (dist,) = fake_site.glob("*.dist-info")
    os.utime(dist, ns=(now, now))  # installed a moment ago

    capture_environment(cache_dir=cache)
    capture_environment(cache_dir=cache)

    assert len(count_listings) == 2
    assert not (cache / "distributions.json").exists()


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"key": "x", "distributions": []}', b'{"distributions": [1]}'],
)
def test_a_bad_cache_file_is_ignored(
    fake_site: Path, tmp_path: Path, count_listings: list[int], content: bytes
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "distributions.json").write_bytes(content)

    assert versions(capture_environment(cache_dir=cache))["fake-pkg"] == "1.0"
    assert len(count_listings) == 1


def test_an_unwritable_cache_costs_speed_not_the_snapshot(
    fake_site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")

    snapshot = capture_environment(cache_dir=not_a_dir / "cache")

    assert versions(snapshot)["fake-pkg"] == "1.0"
    assert "could not write the distributions cache" in caplog.text


def test_parse_cpuinfo_counts_physical_cores() -> None:
    block = "processor\t: {n}\nmodel name\t: Test CPU 9000\nphysical id\t: {p}\ncore id\t\t: {c}\n"
    # 2 packages x 2 cores x 2 hyperthreads
    pairs = [(p, c) for p in "01" for c in "01"] * 2
    text = "\n".join(block.format(n=n, p=p, c=c) for n, (p, c) in enumerate(pairs))

    assert environment._parse_cpuinfo(text) == ("Test CPU 9000", 4)
    assert environment._parse_cpuinfo("processor\t: 0\nHardware\t: BCM2835\n") == ("BCM2835", None)


# nvidia-smi is stood in for by a shell script, which Windows cannot run.
needs_posix_shell = pytest.mark.skipif(sys.platform == "win32", reason="shell script stand-in")


def write_script(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@needs_posix_shell
def test_gpus_come_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    write_script(
        bin_dir,
        "nvidia-smi",
        'echo "NVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB"\n'
        'echo "NVIDIA A100-SXM4-40GB, 535.104.05, 40960 MiB"',
    )
    monkeypatch.setenv("PATH", str(bin_dir))

    gpus = capture_environment()["gpu"]

    assert (
        gpus
        == [{"name": "NVIDIA A100-SXM4-40GB", "driver": "535.104.05", "memory": "40960 MiB"}] * 2
    )


@needs_posix_shell
def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    write_script(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2\nexit 9")
    monkeypatch.setenv("PATH", str(bin_dir))

    assert capture_environment()["gpu"] == []


def test_no_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert capture_environment()["gpu"] == []


@needs_posix_shell
def test_nvidia_smi_is_looked_up_like_shutil_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a" / "nvidia-smi").mkdir(parents=True)  # a folder: skipped
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "nvidia-smi").write_text("#!/bin/sh\nexit 1\n")  # not executable
    write_script(tmp_path / "c", "nvidia-smi", 'echo "GPU X, 1.0, 1 MiB"')
    path = os.pathsep.join(str(tmp_path / name) for name in ("missing", "a", "b", "c"))
    monkeypatch.setenv("PATH", path)

    assert environment._which("nvidia-smi") == shutil.which("nvidia-smi")
    assert environment._which("nvidia-smi") == str(tmp_path / "c" / "nvidia-smi")
    assert capture_environment()["gpu"] == [{"name": "GPU X", "driver": "1.0", "memory": "1 MiB"}]


@needs_posix_shell
def test_nvidia_smi_runs_once_per_process_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    write_script(tmp_path / "bin", "nvidia-smi", f'echo x >> "{calls}"\necho "GPU Y, 2.0, 2 MiB"')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    first = capture_environment()["gpu"]
    first[0]["name"] = "changed by the caller"  # the remembered answer is not shared
    again = capture_environment()["gpu"]

    assert again == [{"name": "GPU Y", "driver": "2.0", "memory": "2 MiB"}]
    assert calls.read_text().count("x") == 1
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "bin"), str(tmp_path)]))
    assert capture_environment()["gpu"] == again  # another PATH: asked again
    assert calls.read_text().count("x") == 2


def test_the_cpu_model_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = capture_environment()["cpu"]
    reads: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    again = capture_environment()["cpu"]

    assert again == first
    assert "/proc/cpuinfo" not in reads
