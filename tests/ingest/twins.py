"""Twin indexes of the same files, one with FAISS segments and one in an embedded Qdrant collection
(tests/ingest/test_qdrant_index.py, tests/rag/test_rag_qdrant.py): a corpus of a dozen files whose
chunks differ enough to rank, and the two ingest configs."""

from __future__ import annotations

import random
from pathlib import Path

from gdn2_ingest import IngestConfig
from gdn2_ingest.config import VectorStoreConfig

TOPICS = {
    "legal": ["termination", "notice", "liability", "indemnity", "warranty", "payment", "invoice", "breach",
              "confidential", "license", "governing", "arbitration"],
    "support": ["password", "reset", "login", "account", "email", "browser", "cache", "printer", "network",
                "install", "update", "error"],
    "code": ["retry", "backoff", "socket", "parser", "token", "buffer", "thread", "queue", "cache", "timeout",
             "handler", "logger"],
}  # fmt: skip
QUERIES = ["termination notice period", "reset my password", "retry with backoff", "cache invalidation error",
           "liability for breach", "install update network", "socket timeout handler"]  # fmt: skip
# a paragraph two files share word for word: equal vectors, so equal scores ranked by chunk id
SHARED = "Both teams agreed that the shared paragraph about quarterly reviews stays identical in each file."


def paragraph(rng: random.Random, words: list[str], n: int) -> str:
    filler = ["the", "a", "of", "and", "for", "with", "each", "must", "when", "after", "before", "any"]
    return " ".join(rng.choice(words if rng.random() < 0.45 else filler) for _ in range(n)).capitalize() + "."


def write_corpus(root: Path, files_per_domain: int = 4, seed: int = 3) -> Path:
    """legal/*.txt, support/*.md, code/*.py under `root`, a few chunks each; returns `root`."""
    rng = random.Random(seed)
    for domain, words in TOPICS.items():
        (root / domain).mkdir(parents=True, exist_ok=True)
        for i in range(files_per_domain):
            mine = rng.sample(words, 5)
            paras = [paragraph(rng, mine, rng.randint(30, 90)) for _ in range(rng.randint(3, 8))]
            if i == 1:
                paras.insert(1, SHARED)
            if domain == "code":
                body = "\n\n".join(
                    f'def f{j}():\n    """{p}"""\n    return {j}\n' for j, p in enumerate(paras)
                )
                (root / domain / f"mod{i}.py").write_text(body)
            else:
                ext = "txt" if domain == "legal" else "md"
                (root / domain / f"{domain}{i}.{ext}").write_text(
                    f"# {domain} {i}\n\n" + "\n\n".join(paras) + "\n"
                )
    return root


def configs(tmp: Path, emb) -> tuple[IngestConfig, IngestConfig]:
    """(FAISS config, Qdrant config embedded in tmp/qdrant) sharing the embedder `emb`."""
    faiss = IngestConfig(embedder_factory=lambda: emb, lock_timeout=5)
    qdrant = IngestConfig(embedder_factory=lambda: emb, lock_timeout=5,
                          vector_store=VectorStoreConfig("qdrant", path=str(tmp / "qdrant")))  # fmt: skip
    return faiss, qdrant
