"""`rag ingest --engine/--address/--workers`: bad values and a missing Ray are one error line, exit 2,
and nothing is written. Runs without Ray (the missing-Ray case hides it when it is installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "ingest"

# the CLI with the fast fake embedder; HIDE_RAY=1 makes `import ray` fail as if it were not installed
DRIVER = (
    f"import os, sys; sys.path[:0] = [{str(ROOT)!r}, {str(FAKES)!r}]\n"
    "if os.environ.get('HIDE_RAY'):\n"
    "    sys.modules['ray'] = None\n"
    "from ingest_fakes import HashEmbedder\n"
    "import gdn2_ingest.pipeline as pipeline\n"
    "emb = HashEmbedder()\n"
    "pipeline.build_embedder = lambda *a, **k: emb\n"
    "import gdn2_cli; gdn2_cli.main()\n"
)


def _rag(*args: str, hide_ray: bool = False) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **({"HIDE_RAY": "1"} if hide_ray else {})}
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, timeout=180, env=env
    )


@pytest.mark.parametrize(
    ("flags", "hide_ray", "message"),
    [
        (["--engine", "spark"], False, "error: engine='spark' must be one of local, ray"),
        (["--address", "auto"], False, "error: engine_address and engine_workers need engine='ray'"),
        (["--workers", "2"], False, "error: engine_address and engine_workers need engine='ray'"),
        (["--engine", "ray"], True, "error: engine='ray' needs Ray Data: pip install 'gdn2-rag[ray]'"),
    ],
    ids=["unknown-engine", "address-without-ray-engine", "workers-without-ray-engine", "ray-missing"],
)
def test_bad_engine_flags_are_one_line(tmp_path: Path, flags, hide_ray, message):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The lease ends on the last day of the month.\n")
    out = _rag("ingest", str(docs), "--index", str(tmp_path / "ix"), *flags, hide_ray=hide_ray)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1 and lines[0].startswith(message), out.stderr
    assert not list((tmp_path / "ix").glob("gen-*"))


def test_workers_must_be_positive(tmp_path: Path):
    out = _rag("ingest", str(tmp_path), "--index", str(tmp_path / "ix"), "--engine", "ray", "--workers", "0")
    assert out.returncode == 2 and "--workers" in out.stderr and "Traceback" not in out.stderr
