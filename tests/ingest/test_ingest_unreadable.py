"""An unreadable folder is listed among the skipped paths with its reason, never skipped in silence."""

from __future__ import annotations

import os
from pathlib import Path

from gdn2_ingest import ingest_paths


def test_ingest_lists_an_unreadable_folder_among_the_skipped(tmp_path, cfg, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "locked" / "a.txt").write_text("hidden text")
    (docs / "b.txt").write_text("Readable text about the notice period.")
    real_scandir = os.scandir

    # what a folder without read permission does (tests run as root, who can read every folder)
    def scandir(path="."):
        if Path(path) == docs / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = ingest_paths(tmp_path / "ix", [docs], cfg, progress=False)
    assert [(s.path, s.reason) for s in report.skipped] == [
        (str(docs / "locked"), "unreadable folder: Permission denied")
    ]
    assert report.documents == 1
