"""CPU threads come from the cores this process can really use (gdn2_rag/threads.py)."""

from __future__ import annotations

import os

import pytest
import torch

from gdn2_rag.threads import available_cpus, cgroup_cpu_quota, cpu_threads, limited_threads

AFFINITY = len(os.sched_getaffinity(0))


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(AFFINITY, 1)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cpu_quota(tmp_path) == 3.0


def test_busy_cores_are_left_alone(tmp_path):
    # no quota in an empty folder: the affinity mask decides, then the load
    assert cpu_threads(None, tmp_path, load=0.0) == AFFINITY
    assert cpu_threads(None, tmp_path, load=float(AFFINITY) + 3) == 1
    if AFFINITY >= 2:
        assert cpu_threads(None, tmp_path, load=1.0) == AFFINITY - 1
    assert cpu_threads(3, tmp_path, load=99.0) == 3
    with pytest.raises(ValueError, match="cpu_threads"):
        cpu_threads(0)


def test_limited_threads_restores_the_setting():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
