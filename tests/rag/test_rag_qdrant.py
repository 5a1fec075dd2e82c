"""`rag ingest --vector-store qdrant` and the library equivalent, against a FAISS twin of the same files:
the same hybrid search and `ask` retrieval (ids and order) through an edit, a removal and a
compaction; later commands use the recorded store without flags; filters reach Qdrant; bad store
flags are one line and exit 2. Embedded Qdrant (--qdrant-path), the hash embedder of the ingest tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gdn2_cli
from gdn2_ingest.config import VectorStoreConfig
from gdn2_rag import RAG, RAGConfig, RagError

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))
from ingest_fakes import HashEmbedder  # noqa: E402
from twins import QUERIES, write_corpus  # noqa: E402

HAVE_QDRANT = importlib.util.find_spec("qdrant_client") is not None
pytestmark = pytest.mark.filterwarnings("ignore:Local mode:UserWarning")
needs_qdrant = pytest.mark.skipif(
    not HAVE_QDRANT, reason="qdrant-client is not installed: pip install 'gdn2-rag[qdrant]'"
)
runner = CliRunner()


def _passages(passages) -> list[tuple]:
    return [(p.chunk_id, p.path, p.line_start, p.line_end) for p in passages]


def _same(a: RAG, b: RAG) -> None:
    """Hybrid search and ask retrieval: same passages in the same order, same fused scores."""
    for q in QUERIES:
        pa, pb = a.search(q, k=10), b.search(q, k=10)
        assert _passages(pa) == _passages(pb)
        np.testing.assert_allclose([p.score for p in pa], [p.score for p in pb], rtol=1e-9)
        np.testing.assert_allclose(
            [p.dense_score or 0 for p in pa], [p.dense_score or 0 for p in pb], atol=1e-5
        )
        aa, ab = a.ask(q, top_k=8), b.ask(q, top_k=8)
        assert _passages(aa.passages) == _passages(ab.passages) and aa.text == ab.text


@needs_qdrant
def test_library_twins_agree_through_edit_remove_and_compact(tmp_path: Path):
    emb = HashEmbedder()
    docs = write_corpus(tmp_path / "docs")
    cfg = RAGConfig(use_reader=False)
    qdrant = VectorStoreConfig("qdrant", path=str(tmp_path / "qdrant"))
    a = RAG.open(tmp_path / "ix-faiss", create=True, config=cfg, embedder=emb)
    b = RAG.open(tmp_path / "ix-qdrant", create=True, config=cfg, embedder=emb)
    a.ingest([docs])
    b.ingest([docs], vector_store=qdrant)
    assert b.info().dense_kind == "qdrant" and a.info().vector_store == "faiss"
    _same(a, b)
    (docs / "code" / "mod0.py").write_text('def retry_forever():\n    """Retry the socket with backoff."""\n')
    for rag in (a, b):
        rag.ingest([docs])  # the recorded store: no vector_store needed
        rag.remove([docs / "support" / "support1.md"])
    _same(a, b)
    for rag in (a, b):
        rag.compact()
    _same(a, b)
    with pytest.raises(RagError, match="does not switch stores"):
        a.ingest([docs], vector_store=qdrant)


@needs_qdrant
def test_filters_are_pushed_into_qdrant_and_keep_only_matching_chunks(tmp_path: Path, monkeypatch):
    emb = HashEmbedder()
    docs = write_corpus(tmp_path / "docs")
    rag = RAG.open(tmp_path / "ix", create=True, config=RAGConfig(use_reader=False), embedder=emb)
    rag.ingest([docs], vector_store=VectorStoreConfig("qdrant", path=str(tmp_path / "qdrant")))
    index = rag.index
    chunks = index.get_chunks([int(i) for i in index.chunk_ids()])
    pushed = []
    search_dense = index.search_dense
    monkeypatch.setattr(
        index, "search_dense", lambda q, k, where=None: pushed.append(where) or search_dense(q, k, where)
    )
    support3 = str(docs / "support" / "support3.md")
    for domain, glob, ok in [
        ("legal", None, lambda c: c.domain == "legal"),
        (None, "*.py", lambda c: c.path.endswith(".py")),
        ("support", "support/support3.md", lambda c: c.path == support3),
        ("code", "*.md", lambda c: False),
    ]:  # fmt: skip
        got = rag.search(QUERIES[1], k=5, domain=domain, path_glob=glob)
        assert all(ok(c) for c in index.get_chunks([p.chunk_id for p in got]))
        assert len(got) == min(5, sum(map(ok, chunks)))
        where = pushed[-1]
        assert where.domain == domain
        assert glob is None or set(where.any_paths) == {
            c.path for c in chunks if rag_filter(glob).matches_path(c.path)
        }


def rag_filter(glob: str):
    from gdn2_rag.filters import MetadataFilter

    return MetadataFilter(path_glob=glob)


def _fake_models(monkeypatch, emb) -> None:
    """The CLI builds the embedder from the manifest: hand it the hash embedder instead of MiniLM."""
    monkeypatch.setattr("gdn2_ingest.pipeline.build_embedder", lambda *a, **k: emb)
    monkeypatch.setattr("gdn2_ingest.index.SentenceTransformerEmbedder", lambda *a, **k: emb)


def _cli(*args: str):
    return runner.invoke(gdn2_cli.app, list(args))


def _search_ids(index: Path, query: str) -> list[int]:
    out = _cli("search", query, "--index", str(index), "--json", "-k", "10")
    assert out.exit_code == 0, out.output
    return [p["chunk_id"] for p in json.loads(out.stdout)["passages"]]


@needs_qdrant
def test_cli_records_the_store_and_later_commands_use_it(tmp_path: Path, monkeypatch):
    emb = HashEmbedder()
    _fake_models(monkeypatch, emb)
    docs = write_corpus(tmp_path / "docs")
    fx, qx, qpath = tmp_path / "ix-faiss", tmp_path / "ix-qdrant", tmp_path / "qdrant"
    assert _cli("ingest", str(docs), "--index", str(fx), "--json").exit_code == 0
    flags = ["--vector-store", "qdrant", "--qdrant-path", str(qpath), "--qdrant-collection", "handbook"]
    out = _cli("ingest", str(docs), "--index", str(qx), *flags, "--json")
    assert out.exit_code == 0, out.output
    info = _cli("info", "--index", str(qx))
    assert f"qdrant collection handbook (embedded in {qpath})" in info.output
    for q in QUERIES[:3]:
        assert _search_ids(fx, q) == _search_ids(qx, q)
    # no store flags: remove and compact keep Qdrant in step
    for ix in (fx, qx):
        assert _cli("remove", str(docs / "legal" / "legal3.txt"), "--index", str(ix)).exit_code == 0
    assert _search_ids(fx, QUERIES[0]) == _search_ids(qx, QUERIES[0])
    for ix in (fx, qx):
        assert _cli("compact", "--index", str(ix)).exit_code == 0
    assert _search_ids(fx, QUERIES[4]) == _search_ids(qx, QUERIES[4])
    # the index owns its store
    out = _cli("ingest", str(docs), "--index", str(qx), "--vector-store", "faiss")
    assert out.exit_code == 2 and "does not switch stores" in out.output
    assert len(out.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--vector-store", "qdrant", "--qdrant-path", "q", "--qdrant-url", "http://h:6333"],
            "exactly one of",
        ),
        (["--vector-store", "qdrant"], "exactly one of a server url (--qdrant-url)"),
        (["--vector-store", "pinecone"], "must be one of faiss, qdrant"),
        (["--qdrant-path", "q"], "need vector store 'qdrant' (--vector-store qdrant)"),
        (["--vector-store", "qdrant", "--qdrant-path", "q", "--qdrant-collection", "a/b"], "may hold only"),
        (["--vector-store", "qdrant", "--qdrant-url", "localhost:6333"], "must start with http://"),
    ],
    ids=["url-and-path", "neither", "unknown-store", "qdrant-flag-alone", "bad-collection", "bad-url"],
)
def test_bad_store_flags_are_one_line_exit_2(tmp_path: Path, flags, message):
    (tmp_path / "a.md").write_text("# A\n\nAardvarks.\n")
    out = _cli("ingest", str(tmp_path / "a.md"), "--index", str(tmp_path / "ix"), *flags)
    assert out.exit_code == 2 and message in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    assert not (tmp_path / "ix").exists()


@needs_qdrant
def test_missing_qdrant_extra_names_the_install(tmp_path: Path, monkeypatch):
    emb = HashEmbedder()
    _fake_models(monkeypatch, emb)
    (tmp_path / "a.md").write_text("# A\n\nAardvarks dig burrows.\n")
    qx = tmp_path / "ix"
    assert _cli("ingest", str(tmp_path / "a.md"), "--index", str(qx), "--vector-store", "qdrant",
                "--qdrant-path", str(tmp_path / "q")).exit_code == 0  # fmt: skip
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    out = _cli("ingest", str(tmp_path / "a.md"), "--index", str(tmp_path / "ix2"), "--vector-store", "qdrant",
               "--qdrant-path", str(tmp_path / "q2"))  # fmt: skip
    assert out.exit_code == 2 and "pip install 'gdn2-rag[qdrant]'" in out.output
    assert len(out.output.strip().splitlines()) == 1
    # an index that keeps its vectors in Qdrant says the same when searched without the extra
    out = _cli("search", "aardvarks", "--index", str(qx))
    assert out.exit_code == 2 and "pip install 'gdn2-rag[qdrant]'" in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_unreachable_server_is_one_line(tmp_path: Path, monkeypatch):
    if not HAVE_QDRANT:
        pytest.skip("qdrant-client is not installed: pip install 'gdn2-rag[qdrant]'")
    _fake_models(monkeypatch, HashEmbedder())
    (tmp_path / "a.md").write_text("# A\n\nAardvarks.\n")
    out = _cli("ingest", str(tmp_path / "a.md"), "--index", str(tmp_path / "ix"), "--vector-store", "qdrant",
               "--qdrant-url", "http://127.0.0.1:9")  # fmt: skip
    assert out.exit_code == 2 and "Qdrant (server http://127.0.0.1:9) failed to open collection" in out.output
    assert len(out.output.strip().splitlines()) == 1
