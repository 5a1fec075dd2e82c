"""`rag ingest` / `rag info` on damaged indexes, bad paths, a full disk, a held lock; `--max-file-mb`.

The CLI runs in a subprocess whose embedder is the tests' fast HashEmbedder (no model load)."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "ingest"

DRIVER = (
    f"import os, sys; sys.path[:0] = [{str(ROOT)!r}, {str(FAKES)!r}]\n"
    "from ingest_fakes import HashEmbedder\n"
    "import gdn2_ingest.pipeline as pipeline, gdn2_ingest.store as store\n"
    "emb = HashEmbedder()\n"
    "pipeline.build_embedder = lambda *a, **k: emb\n"
    "if os.environ.get('FAKE_FREE_BYTES'):\n"
    "    store.free_bytes = lambda d: int(os.environ['FAKE_FREE_BYTES'])\n"
    "import gdn2_cli; gdn2_cli.main()\n"
)


def _rag(*args: str, env: dict | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, timeout=180,
        env={**os.environ, **(env or {})}, preexec_fn=limit,
    )  # fmt: skip


def _one_error_line(out: subprocess.CompletedProcess, *needles: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    # progress bars (an ingest that got as far as embedding) are not error lines
    lines = [line for line in out.stderr.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert lines[0].startswith("error:") and "internal error" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    assert out.stdout == ""
    return lines[0]


def _snapshot(ix: Path) -> dict:
    return {
        str(p.relative_to(ix)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(ix.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "faq.md").write_text("# Reset\n\nTo reset your password open Settings and choose Reset.\n")
    (d / "terms.txt").write_text("1. Term\n\nThis agreement lasts two years from the effective date.\n")
    return d


@pytest.fixture
def index(tmp_path: Path, docs: Path) -> Path:
    ix = tmp_path / "ix"
    out = _rag("ingest", str(docs), "--index", str(ix))
    assert out.returncode == 0, out.stderr
    assert "index ready" in out.stdout and "verified" in out.stdout
    return ix


@pytest.mark.parametrize("damaged", ["dense.faiss", "keyword/vocab.json"])
def test_damaged_generation_is_one_line_exit_2_for_ingest_and_info(index: Path, docs: Path, damaged):
    live = index / (index / "CURRENT").read_text().strip()
    # the segment holding the files (a damaged part of any segment is reported by its name)
    gen = index / "segments" / json.loads((live / "manifest.json").read_text())["segments"][-1]
    f = gen / damaged
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    before = _snapshot(index)
    _one_error_line(_rag("ingest", str(docs), "--index", str(index)), "is broken", damaged, gen.name)
    (docs / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    _one_error_line(_rag("ingest", str(docs), "--index", str(index)), "is broken", damaged)
    _one_error_line(_rag("info", "--index", str(index)), "is broken", damaged)
    _one_error_line(_rag("info", "--json", "--index", str(index)), "is broken", damaged)
    assert _snapshot(index) == before


def test_index_path_that_is_a_regular_file(tmp_path: Path, docs: Path):
    f = tmp_path / "file.txt"
    f.write_text("x\n")
    _one_error_line(_rag("ingest", str(docs), "--index", str(f)), str(f), "is a file, not an index folder")


def test_file_size_limit_is_one_line_naming_the_disk(index: Path, docs: Path):
    (docs / "big.txt").write_text("\n\n".join(f"Paragraph {i} about walruses. " * 25 for i in range(400)))
    before = _snapshot(index)
    line = _one_error_line(
        _rag("ingest", str(docs), "--index", str(index), fsize=150_000), "cannot write", str(index)
    )
    assert "file-size limit" in line and "is unchanged" in line and "needs about" in line
    assert _snapshot(index) == before
    assert _rag("info", "--index", str(index)).returncode == 0


def test_too_little_free_space_is_refused_before_writing(index: Path, docs: Path):
    (docs / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    before = _snapshot(index)
    line = _one_error_line(
        _rag("ingest", str(docs), "--index", str(index), env={"FAKE_FREE_BYTES": "1000"}),
        "not enough disk space", "needs about",
    )  # fmt: skip
    assert "1.0 KB are free" in line
    assert _snapshot(index) == before


def test_verbose_and_json_report_the_disk_estimate(index: Path, docs: Path):
    (docs / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    out = _rag("-v", "ingest", str(docs), "--index", str(index))
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("disk: generation") and "needed" in line for line in out.stderr.splitlines())
    assert len([p for p in index.iterdir() if p.name.startswith("gen-")]) == 1
    (docs / "new2.md").write_text("# New 2\n\nOtters hold hands.\n")
    out = _rag("ingest", "--json", str(docs), "--index", str(index))
    assert out.returncode == 0, out.stderr
    disk = json.loads(out.stdout)["report"]["disk"]
    assert disk["estimate_bytes"] >= disk["segment_bytes"] > 0 and disk["free_bytes"] > 0


def test_second_ingest_says_it_waits_for_the_lock_holder(index: Path, docs: Path):
    (docs / "new.md").write_text("# New\n\nPenguins mate for life.\n")
    fd = os.open(index / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "ingest", str(docs), "--index", str(index)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "waiting for the index lock" in line and f"held by PID {os.getpid()}" in line, line
        time.sleep(0.3)
        assert proc.poll() is None, "it should wait, not fail"
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "index ready" in out


def test_max_file_mb_option(tmp_path: Path, docs: Path):
    (docs / "big.txt").write_text("Walruses. " * 300)  # 3000 bytes
    ix = tmp_path / "ix"
    help_out = _rag("ingest", "-h")
    assert "--max-file-mb" in help_out.stdout and "megabytes" in help_out.stdout
    out = _rag("ingest", "--json", "--max-file-mb", "0.002", str(docs), "--index", str(ix))
    assert out.returncode == 0, out.stderr
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads(out.stdout)["report"]["skipped"]}
    assert set(skipped) == {"big.txt"}
    assert "3000 bytes > max_file_bytes=2000" in skipped["big.txt"] and "--max-file-mb" in skipped["big.txt"]
    # a higher limit retries it
    out = _rag("ingest", "--json", "--max-file-mb", "0.01", str(docs), "--index", str(ix))
    assert out.returncode == 0 and json.loads(out.stdout)["report"]["skipped"] == []
    bad = _rag("ingest", "--max-file-mb", "0", str(docs), "--index", str(ix))
    assert bad.returncode == 2 and "--max-file-mb" in bad.stderr
