"""Keyword-retrieved training contexts for reader v3: the scorer against the BM25 formula written out, and
samples whose distractors are the question's keyword hits with the evidence at its own rank."""

from __future__ import annotations

import math
import random

import numpy as np

from gdn2_model.data.chunk_bm25 import K1, B, ChunkBM25, words
from gdn2_model.data.corpus import Document
from gdn2_model.data.qa_v3 import V3SampleMaker


def _bm25_by_hand(texts: list[str], query: str) -> list[float]:
    docs = [words(t) for t in texts]
    avgdl = sum(map(len, docs)) / len(docs)
    out = []
    for d in docs:
        s = 0.0
        for w in words(query):
            df = sum(w in x for x in docs)
            if not df:
                continue
            tf = d.count(w)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            s += idf * tf / (tf + K1 * (1 - B + B * len(d) / avgdl))
        out.append(s)
    return out


def test_scores_rank_like_the_formula_written_out():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(40)] + ["default", "port", "timeout", "the"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30))) for _ in range(60)]
    index = ChunkBM25(texts)
    for query in ["default port", "w3 w7 w7 timeout", "the w12", "nothing matches here"]:
        ref = np.array(_bm25_by_hand(texts, query))
        want = sorted((i for i in range(len(texts)) if ref[i] > 0), key=lambda i: (-ref[i], i))[:10]
        assert index.search(query, 10) == want
    allowed = np.zeros(len(texts), bool)
    allowed[::2] = True
    assert all(i % 2 == 0 for i in index.search("w1 w2 w3", 20, allowed))


def test_retrieved_contexts_put_the_evidence_among_its_keyword_neighbours():
    topics = ["tar", "gzip", "rsync", "ssh", "curl", "wget"]
    docs = []
    for t in topics:
        text = "".join(
            f"-{c}\n{t} option {c} sets the {t} {c} level; the default {c} level is {n}\n\n"
            for c, n in zip("abcdefgh", range(10, 90, 10), strict=False)
        )
        docs.append(Document(f"/x/{t}.1", "support", f"{t}.1", text * 2))
    maker = V3SampleMaker(docs, chunk_chars=200, p_unanswerable=0.25, p_retrieved=1.0)
    n_answered = n_unans = 0
    for i in range(30):
        s = maker.sample(random.Random(i), 300)
        s.check()
        hits = {(maker.docs[d].title, c) for d, c in maker.retrieved(s.question, 120)}
        for p in s.pieces:
            assert any(p.header.startswith(t + " (") for t, _ in hits)  # every piece is a keyword hit
        if s.answer is None:
            n_unans += 1
            assert not any(p.header.startswith(s.doc_id.rsplit("/", 1)[1] + " (") for p in s.pieces)
            continue
        n_answered += 1
        p, cs, ce = s.answer
        others = [q for j, q in enumerate(s.pieces) if j != p]
        assert all(s.answer_text not in q.text for q in others if len(s.answer_text) >= 6)
    assert n_answered >= 10 and n_unans >= 2
