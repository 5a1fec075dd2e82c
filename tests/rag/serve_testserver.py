"""Runs the real server app under uvicorn over the tiny test corpus (a FakeIndex), for tests/rag/test_serve*.

    python tests/rag/serve_testserver.py --root DIR --port N [--delay S] [--api-key K] [--reader]

--delay slows every dense search (a request in progress for the restart test); --reader reads with a
tiny random GDN-2 reader on CPU through the micro-batcher (answers are arbitrary spans, the batching
and packing are real); --read-delay slows each batched read (streamed events must not wait for it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rag_corpus import CODE_MODULE, CONTRACT, HELP_PAGE  # noqa: E402
from rag_fakes import FakeIndex  # noqa: E402

from gdn2_rag import RAG, RAGConfig  # noqa: E402
from gdn2_rag.batching import BatchSettings  # noqa: E402
from gdn2_rag.serve import ServeSettings, run  # noqa: E402
from gdn2_rag.serve.reader import BatchedReaderRuntime  # noqa: E402


class SlowIndex(FakeIndex):
    delay = 0.0

    def search_dense(self, query: str, k: int):
        time.sleep(self.delay)
        return super().search_dense(query, k)


def tiny_reader():
    import torch

    from gdn2_model import GDN2Config, GDN2ForReader
    from gdn2_model.reader import DEFAULT_CHECKPOINT, Reader
    from gdn2_model.tokenizer import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(DEFAULT_CHECKPOINT)
    cfg = GDN2Config(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_heads=2, head_dim=16,
        intermediate_size=48, eos_token_id=None, bos_token_id=None, reader_question_match=True,
        reader_end_shift=True,
    )  # fmt: skip
    return Reader(GDN2ForReader(cfg).eval(), tok, DEFAULT_CHECKPOINT, torch.device("cpu"), torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--api-key")
    ap.add_argument("--reader", action="store_true")
    ap.add_argument("--max-inflight", type=int, default=64)
    ap.add_argument("--max-body-bytes", type=int, default=64 * 1024)
    ap.add_argument("--batch-wait-ms", type=float, default=20.0)
    ap.add_argument("--read-delay", type=float, default=0.0)
    args = ap.parse_args()

    root = Path(args.root)
    files = {
        root / "contract.txt": ("legal", CONTRACT),
        root / "help" / "password.md": ("support", HELP_PAGE),
        root / "src" / "retry.py": ("code", CODE_MODULE),
    }
    for path, (_, text) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    index = SlowIndex.from_files({p: d for p, (d, _) in files.items()})
    index.delay = args.delay
    settings = ServeSettings(
        port=args.port,
        api_key=args.api_key,
        max_inflight=args.max_inflight,
        max_body_bytes=args.max_body_bytes,
        batch=BatchSettings(max_batch=16, max_wait_ms=args.batch_wait_ms, max_queue=64),
    )
    config = RAGConfig(device="cpu", use_reader=args.reader, require_reader=args.reader, context_tokens=2000)
    reader = BatchedReaderRuntime.from_config(config, settings.batch, settings.max_pass_tokens)
    if args.reader:
        # a tiny random network instead of the shipped checkpoint: loads in a second, reads in milliseconds
        reader._reader, reader._loaded, reader.device = tiny_reader(), True, "cpu"
        if args.read_delay:
            read = reader._reader.token_spans_batch

            def slow_read(*a, **kw):
                time.sleep(args.read_delay)
                return read(*a, **kw)

            reader._reader.token_spans_batch = slow_read
    rag = RAG(root / "index", index=index, config=config, reader=reader)
    run(rag, settings)


if __name__ == "__main__":
    main()
