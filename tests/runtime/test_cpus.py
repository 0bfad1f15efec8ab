"""CPU quota detection from cgroup files (written here as a container runtime writes them)."""

from __future__ import annotations

import os

import pytest

from modelfn.runtime.cpus import available_cpus

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),  # v2, 1 CPU
        ({"cpu.max": "150000 100000\n"}, 1),  # v2, 1.5 CPUs: round down
        ({"cpu.max": "50000 100000\n"}, 1),  # v2, half a CPU: at least 1
        ({"cpu.max": "max 100000\n"}, AFFINITY),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, AFFINITY),
        ({"cpu.max": "garbage"}, AFFINITY),  # unreadable: the affinity decides
        ({}, AFFINITY),  # no cgroup files at all
    ],
)
def test_the_quota_caps_the_affinity(tmp_path, files, expected) -> None:
    assert available_cpus(cgroup(tmp_path, files)) == min(expected, AFFINITY)


def test_a_quota_above_the_affinity_does_not_raise_it(tmp_path) -> None:
    assert available_cpus(cgroup(tmp_path, {"cpu.max": "6400000 100000"})) == AFFINITY


def test_this_machine() -> None:
    assert 1 <= available_cpus() <= AFFINITY
