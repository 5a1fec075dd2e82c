"""The tuning table: complete, frozen, and looked up by architecture and shape the way the kernels use it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gdn2_kernels.gdn2.tuning import (
    ARCHS,
    BUCKETS,
    LONG_CHUNKS,
    TABLE,
    Tuning,
    arch_for,
    device_arch,
    lookup,
    shape_bucket,
    tuning_for,
)


def test_every_arch_has_every_bucket():
    for arch in (*ARCHS, "interpreter"):
        for bucket in BUCKETS:
            assert isinstance(TABLE[(arch, bucket)], Tuning)


def test_rows_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TABLE[("sm_90", "wide")].state_warps = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("capability", "shared", "arch"),
    [
        ((8, 0), 166912, "sm_80"),  # A100
        ((8, 6), 101376, "sm_89"),  # RTX 30xx, A10: A100's shared memory does not fit, L4's does
        ((8, 7), 166912, "sm_80"),  # Orin
        ((8, 9), 101376, "sm_89"),  # L4, RTX 4090
        ((9, 0), 232448, "sm_90"),  # H100, H200
        ((12, 0), 101376, "sm_89"),  # consumer Blackwell: 99 KB, so the sm_89 row
        ((10, 0), 232448, "sm_90"),
    ],
)
def test_arch_for_takes_newest_row_that_fits(capability, shared, arch):
    assert arch_for(capability, shared) == arch


def test_arch_for_rejects_older_or_smaller_gpus():
    with pytest.raises(ValueError, match="sm_75"):
        arch_for((7, 5), 65536)
    with pytest.raises(ValueError, match="shared memory"):
        arch_for((8, 0), 65536)


def test_off_cuda_is_the_interpreter_row():
    assert device_arch(torch.device("cpu")) == "interpreter"
    assert tuning_for(torch.device("cpu"), 1, 3, 1).work_dtype == torch.float32


@pytest.mark.parametrize(
    ("num_seqs", "num_chunks", "heads", "bucket"),
    [
        (1, LONG_CHUNKS, 16, "long"),
        (1, LONG_CHUNKS - 1, 16, "narrow"),
        (2, 512, 16, "narrow"),
        (4, 256, 16, "medium"),
        (8, 512, 16, "wide"),
        (1, 10, 128, "wide"),
    ],
)
def test_shape_bucket(num_seqs, num_chunks, heads, bucket):
    assert shape_bucket(num_seqs, num_chunks, heads) == bucket


def test_long_rows_run_segmented_and_short_ones_do_not():
    for arch in ARCHS:
        assert lookup(arch, "long").segments > 1
        for bucket in ("narrow", "medium", "wide"):
            assert lookup(arch, bucket).segments == 1


def test_unknown_key_names_the_known_rows():
    with pytest.raises(KeyError, match="sm_90"):
        lookup("sm_70", "wide")


def test_row_serialises_to_plain_values():
    d = TABLE[("sm_90", "long")].as_dict()
    assert d["work_dtype"] == "bfloat16" and d["segments"] == 6


@pytest.mark.parametrize("key", [("sm_80", "wide"), ("sm_90", "long"), ("interpreter", "narrow")])
def test_autotune_prints_the_row_it_found(key):
    from gdn2_kernels.autotune import row_source

    row = TABLE[key]
    text = row_source(row, repr(key))
    printed_key, expr = text.rstrip(",").split(": ", 1)
    assert printed_key == repr(key)
    assert eval(expr, {"Tuning": Tuning, "torch": torch}) == row  # the TABLE entry, as pasted


def test_autotune_without_gpu_says_so(capsys):
    from gdn2_kernels.autotune import main

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert main(["--shape", "1x64"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert main(["--shape", "nope"]) == 2
