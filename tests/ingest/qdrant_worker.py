"""A writer killed between writing its points into Qdrant and switching the index's generation
(tests/ingest/test_qdrant_index.py):

    python qdrant_worker.py INDEX DOCS TMP

ingests DOCS into the Qdrant-backed INDEX (the collection in TMP/qdrant, tests/ingest/twins.py) and
exits with code 9, without any cleanup, at the moment it would switch CURRENT: the new segment's
points and dead marks are in the collection, the new generation is written and checked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ingest_fakes import HashEmbedder  # noqa: E402
from twins import configs  # noqa: E402

from gdn2_ingest import ingest_paths, store  # noqa: E402


def _killed(*_args, **_kwargs) -> None:
    os._exit(9)


if __name__ == "__main__":
    index, docs, tmp = sys.argv[1:4]
    store.publish = _killed
    ingest_paths(index, [docs], configs(Path(tmp), HashEmbedder())[1], progress=False)
    sys.exit(1)  # not reached: the publish above exits
