"""The Ray engine builds the index a local ingest builds: same chunks (ids, texts, hashes), same
vectors and search results, the same incremental work, and a failed worker publishes nothing.

Runs a 2-CPU Ray on this machine (started once for the module); skipped when Ray Data is not
installed (`pip install 'gdn2-rag[ray]'`, which the `dev` extra includes).
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'gdn2-rag[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'gdn2-rag[ray]'")

import ingest_fakes  # noqa: E402
from ingest_corpus import CODE, LEGAL, SUPPORT  # noqa: E402
from ingest_fakes import HashEmbedder  # noqa: E402
from ray import cloudpickle  # noqa: E402  (the copy Ray pickles with)

from gdn2_ingest import Index, IngestConfig, ingest_paths, store  # noqa: E402

QUERIES = ["termination for material breach", "reset password link", "parse command line arguments",
           "confidential information employees", "thread pool executor", "unicode decode error"]  # fmt: skip


class FailingEmbedder(HashEmbedder):
    """Fails in the worker, after some batches may have been embedded."""

    def embed(self, texts):
        raise OSError("disk of the worker is gone")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # the fakes live in tests/, which Ray's workers cannot import: ship them by value
    cloudpickle.register_pickle_by_value(ingest_fakes)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(engine: str = "local", **kw) -> IngestConfig:
    if engine == "ray":
        kw.setdefault("engine_workers", 2)
    return IngestConfig(embedder_factory=HashEmbedder, lock_timeout=5, engine=engine, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~40 files of every domain, one unparseable file and a non-UTF-8 name."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "legal").mkdir()
    (root / "support").mkdir()
    (root / "code").mkdir()
    for i in range(6):
        (root / "legal" / f"msa{i}.txt").write_text(LEGAL.replace("thirty", f"{30 + i}"))
        (root / "support" / f"faq{i}.md").write_text(SUPPORT + f"\n## Note {i}\n\nTicket {i} was closed.\n")
    (root / "code" / "tiny.py").write_text(CODE)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("argparse.py", "shlex.py", "textwrap.py", "fnmatch.py", "glob.py", "bisect.py",
                 "heapq.py", "queue.py", "sched.py", "colorsys.py", "keyword.py", "this.py", "token.py",
                 "stat.py", "struct.py", "numbers.py", "abc.py", "copy.py", "operator.py", "string.py",
                 "calendar.py", "getopt.py", "pprint.py", "reprlib.py", "difflib.py"):  # fmt: skip
        if (stdlib / name).is_file():
            shutil.copy(stdlib / name, root / "code" / name)
    (root / "support" / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (root / "support" / "caf\xe9-notes.txt".encode("latin-1").decode("utf-8", "surrogateescape")).write_text(
        "Caf\u00e9 opening hours are nine to five on weekdays."
    )
    return root


def _snapshot(index_dir: Path) -> tuple[list[tuple], np.ndarray, dict]:
    """Every chunk row, every vector (by chunk id) and the top-10 of each query."""
    with Index.open(index_dir, embedder=HashEmbedder()) as ix:
        ids = ix.chunk_ids()
        rows = [tuple(vars(c).values()) for c in ix.get_chunks(ids.tolist())]
        vecs = ix.vectors(ids)
        top = {q: ix.search_dense(q, 10) for q in QUERIES}
    return rows, vecs, top


def _same_index(a: Path, b: Path) -> None:
    rows_a, vecs_a, top_a = _snapshot(a)
    rows_b, vecs_b, top_b = _snapshot(b)
    assert len(rows_a) > 100
    assert rows_a == rows_b
    np.testing.assert_allclose(vecs_a, vecs_b, atol=1e-6)
    for q in QUERIES:
        assert [i for i, _ in top_a[q]] == [i for i, _ in top_b[q]], q


def _counts(rep) -> tuple:
    return (rep.files_new, rep.files_changed, rep.files_deleted, rep.chunks_added, rep.chunks_removed,
            rep.chunks_embedded, rep.chunks_total, sorted(s.reason for s in rep.skipped))  # fmt: skip


def test_ray_builds_the_local_index_and_updates_it_the_same_way(tmp_path: Path, corpus: Path):
    work = tmp_path / "docs"
    shutil.copytree(corpus, work)
    local, remote = tmp_path / "local", tmp_path / "ray"
    rep_l = ingest_paths(local, [work], _cfg(), progress=False)
    rep_r = ingest_paths(remote, [work], _cfg("ray"), progress=False)
    assert _counts(rep_l) == _counts(rep_r)
    assert rep_r.files_new >= 38 and len(rep_r.skipped) == 1  # the broken PDF, on both engines
    _same_index(local, remote)

    # incremental: one file changed, one deleted, one added; only their chunks are embedded again
    (work / "legal" / "msa0.txt").write_text(LEGAL.replace("Termination", "Ending of the agreement"))
    (work / "code" / "glob.py").unlink()
    (work / "support" / "new.md").write_text("# Billing\n\nInvoices are sent on the first of the month.\n")
    rep_l = ingest_paths(local, [work], _cfg(), progress=False)
    rep_r = ingest_paths(remote, [work], _cfg("ray"), progress=False)
    assert _counts(rep_l) == _counts(rep_r)
    assert (rep_r.files_new, rep_r.files_changed, rep_r.files_deleted) == (1, 1, 1)
    assert 0 < rep_r.chunks_embedded < 10
    _same_index(local, remote)

    # nothing changed: no Ray work at all, the same generation stays live
    gen = store.current_generation(remote).name
    rep_r = ingest_paths(remote, [work], _cfg("ray"), progress=False)
    assert not rep_r.changed and rep_r.generation == gen


def test_a_failed_worker_publishes_nothing(tmp_path: Path, corpus: Path):
    work = tmp_path / "docs"
    shutil.copytree(corpus / "legal", work)
    index = tmp_path / "ix"
    ingest_paths(index, [work], _cfg("ray"), progress=False)
    before = store.current_generation(index).name
    rows_before, _, top_before = _snapshot(index)
    (work / "msa1.txt").write_text(LEGAL + "\n5. Notices. Notices are given in writing.\n")
    failing = IngestConfig(
        embedder_factory=lambda: FailingEmbedder(name="hash"), lock_timeout=5, engine="ray", engine_workers=2
    )
    with pytest.raises(RuntimeError, match="Ray engine, embedding: OSError: disk of the worker is gone"):
        ingest_paths(index, [work], failing, progress=False)
    assert store.current_generation(index).name == before
    assert sorted(p.name for p in index.iterdir() if p.name.startswith("gen-")) == [before]
    rows_after, _, top_after = _snapshot(index)
    assert rows_after == rows_before and top_after == top_before


def test_engine_settings_are_checked():
    with pytest.raises(ValueError, match="engine='spark' must be one of local, ray"):
        IngestConfig(engine="spark").validate()
    with pytest.raises(ValueError, match="need engine='ray'"):
        IngestConfig(engine_address="auto").validate()
    with pytest.raises(ValueError, match="engine_workers=0 must be >= 1"):
        IngestConfig(engine="ray", engine_workers=0).validate()


def test_more_workers_than_the_cluster_has_cpus_is_one_clear_error(tmp_path: Path, corpus: Path):
    from gdn2_ingest.engines.ray_engine import EngineError

    with pytest.raises(EngineError, match="engine_workers=3 but the Ray cluster has 2 CPUs"):
        ingest_paths(tmp_path / "ix", [corpus / "legal"], _cfg("ray", engine_workers=3), progress=False)
    assert store.current_generation(tmp_path / "ix") is None
