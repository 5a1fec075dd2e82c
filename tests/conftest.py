"""Shared test setup: GPU tests are skipped (with the reason shown) where CUDA is absent; Triton kernels can
run on CPU under the Triton interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run `make test-gpu` on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def run_interpreted() -> Callable[[Path], dict]:
    """Run a script under the Triton interpreter (TRITON_INTERPRET=1, CPU) in a subprocess: the interpreter
    must be chosen before any kernel is defined. The script prints its results as JSON on its last line."""

    def run(script: Path) -> dict:
        env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run
