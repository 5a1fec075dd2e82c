"""Vector stores: FAISS (the exact reference) and Qdrant (embedded) against a numpy brute force, and
against each other on 10k chunks: top-10 identical, filters by domain and path, deletes, upserts.

Qdrant tests are skipped when qdrant-client is not installed (`pip install 'gdn2-rag[qdrant]'`, in
the `dev` extra)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gdn2_ingest.vectorstores import Where, open_store
from gdn2_ingest.vectorstores.base import path_keys

# embedded Qdrant warns that it always searches exactly (which is what these tests want)
pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

N, DIM, K = 10_000, 384, 10
DOMAINS = ("legal", "support", "code")
HAVE_QDRANT = importlib.util.find_spec("qdrant_client") is not None
NO_QDRANT = "qdrant-client is not installed: pip install 'gdn2-rag[qdrant]'"
BACKENDS = ["faiss", pytest.param("qdrant", marks=pytest.mark.skipif(not HAVE_QDRANT, reason=NO_QDRANT))]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def rows():
    """10k chunk-like vectors: 200 topics (clusters) with noise, ids not contiguous, 60 files in
    nested folders, three domains."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((200, DIM))
    vecs = _unit(centres[rng.integers(0, 200, N)] + 0.8 * rng.standard_normal((N, DIM)))
    ids = np.arange(N, dtype=np.int64) * 3 + 11
    files = [f"/corpus/{DOMAINS[f % 3]}/{'deep/' if f % 2 else ''}file{f}.txt" for f in range(60)]
    which = rng.integers(0, 60, N)
    paths = [files[f] for f in which]
    domains = [DOMAINS[f % 3] if f % 10 else "code" for f in which]  # some files' domain differs from folder
    queries = _unit(centres[:25] + 0.8 * rng.standard_normal((25, DIM)))
    return ids, vecs, domains, paths, queries


def _brute(ids, vecs, queries, k, keep=None):
    """The exact answer: float64 inner products over the admitted rows."""
    mask = np.ones(len(ids), bool) if keep is None else keep
    s = queries.astype(np.float64) @ vecs[mask].astype(np.float64).T
    out = []
    for row in s:
        top = np.argsort(-row, kind="stable")[:k]
        out.append([(int(ids[mask][j]), float(row[j])) for j in top])
    return out


def _same(got, ref, tol=1e-5):
    """Same ids in the same order, same scores (up to float32 rounding)."""
    assert [[i for i, _ in g] for g in got] == [[i for i, _ in r] for r in ref]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in r], atol=tol)


@pytest.fixture(scope="module")
def stores(rows):
    """Each installed backend holding the 10k rows, filled once for the module."""
    ids, vecs, domains, paths, _ = rows
    made = {}
    for kind in ("faiss", "qdrant"):
        if kind == "qdrant" and not HAVE_QDRANT:
            continue
        made[kind] = open_store(kind, DIM, **({"exact": True} if kind == "qdrant" else {}))
        made[kind].add(ids, vecs, domains, paths)
    yield made
    for s in made.values():
        s.close()


@pytest.fixture(params=BACKENDS)
def filled(request, stores):
    return request.param, stores[request.param]


def test_top10_is_the_exact_top10(filled, rows):
    ids, vecs, _, _, queries = rows
    _, store = filled
    assert store.count() == N
    _same(store.search(queries, K), _brute(ids, vecs, queries, K))


@pytest.mark.parametrize(
    "where",
    [Where(domain="legal"), Where(path="/corpus/support"), Where(path="/corpus/code/deep/"),
     Where(path="/corpus/legal/file0.txt"), Where(domain="code", path="/corpus/legal"),
     Where(domain="support", path="/nowhere")],
    ids=["domain", "folder", "subfolder-slash", "file", "domain+folder", "no-match"],
)  # fmt: skip
def test_filters_admit_exactly_the_matching_rows(filled, rows, where):
    ids, vecs, domains, paths, queries = rows
    _, store = filled
    keep = np.array([(where.domain is None or d == where.domain)
                     and (where.path is None or where.folder() in path_keys(p))
                     for d, p in zip(domains, paths, strict=True)])  # fmt: skip
    got = store.search(queries[:5], K, where)
    if not keep.any():
        assert got == [[] for _ in range(5)]
        return
    # a filter never shortens the top-k while enough rows match
    assert all(len(g) == min(K, int(keep.sum())) for g in got)
    _same(got, _brute(ids, vecs, queries[:5], K, keep))


@pytest.mark.parametrize("kind", BACKENDS)
def test_delete_and_upsert(rows, kind):
    ids, vecs, domains, paths, queries = rows
    store = open_store(kind, DIM, **({"exact": True} if kind == "qdrant" else {}))
    n = 2000
    store.add(ids[:n], vecs[:n], domains[:n], paths[:n])
    # delete every chunk of two files and some unknown ids
    gone = np.array(
        [i for i, p in zip(ids[:n], paths[:n], strict=True) if p.endswith(("file3.txt", "file8.txt"))]
    )
    store.delete(np.concatenate([gone, [10**9]]))
    keep = ~np.isin(ids[:n], gone)
    assert store.count() == int(keep.sum())
    got = store.search(queries, K)
    assert not {i for hits in got for i, _ in hits} & set(gone.tolist())
    _same(got, _brute(ids[:n], vecs[:n], queries, K, keep))
    # re-adding an id replaces its vector and its payload
    new = _unit(queries[:1].copy())
    store.add(ids[5:6], new, ["legal"], ["/moved/x.txt"])
    assert store.count() == int(keep.sum()) + (0 if keep[5] else 1)
    assert store.search(new, 1)[0][0][0] == int(ids[5])
    assert store.search(new, 1, Where(path="/moved"))[0][0][0] == int(ids[5])
    assert int(ids[5]) not in {i for i, _ in store.search(new, K, Where(domain="code"))[0]}
    store.close()


@pytest.mark.skipif(not HAVE_QDRANT, reason=NO_QDRANT)
def test_faiss_and_qdrant_agree_on_10k_chunks(stores, rows):
    """The bar of issue 20: exact Qdrant returns FAISS flat's top-10, filtered or not."""
    queries = rows[4]
    a, b = stores["faiss"], stores["qdrant"]
    _same(b.search(queries, K), a.search(queries, K))
    w = Where(domain="support", path="/corpus")
    _same(b.search(queries, K, w), a.search(queries, K, w))


def test_bad_rows_are_refused():
    store = open_store("faiss", 4)
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(2, 4\)"):
        store.add(np.array([1, 2]), np.zeros((2, 3), np.float32), ["a", "b"], ["/x", "/y"])
    with pytest.raises(ValueError, match="distinct"):
        store.add(np.array([1, 1]), np.zeros((2, 4), np.float32), ["a", "b"], ["/x", "/y"])
    with pytest.raises(ValueError, match="must be one of faiss, qdrant"):
        open_store("pinecone", 4)
    assert store.search(np.ones((1, 4), np.float32), 5) == [[]]


def test_path_keys():
    assert path_keys("/a/b/c.txt") == ["/a/b/c.txt", "/a/b", "/a", "/"]
    assert path_keys("a/b.txt") == ["a/b.txt", "a"]
    assert Where(path="/a/b/").folder() == "/a/b" and Where(path="/").folder() == "/"
