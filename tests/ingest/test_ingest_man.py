"""Man pages rendered by groff: joined paragraphs, inline fonts, option blocks kept whole, citations
that are lines of the rendered text; groff run safely, with the built-in parser as the fallback."""

from __future__ import annotations

import gzip
import logging
import shutil
import time
from pathlib import Path

import pytest

from gdn2_ingest import Index, IngestConfig, ingest_paths
from gdn2_ingest.loaders import load_file
from gdn2_ingest.loaders import man as man_mod

pytestmark = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")

# the constructs that leaked before: one word per source line, `.B` options, pod2man `.IP` indents
PAGE = r""".TH FINDISH 1 "2024" "findish 1.0"
.SH NAME
findish \- look for files
.SH OPTIONS
.TP
.B \-perm " +MODE"
Match files whose permission bits
include
.IR MODE .
.TP
.BI \-\-binary\-files= TYPE
If
.I TYPE
is
.BR without\-match ,
binary files are skipped.
.IP "\-\-recursive" 4
.IX Item "--recursive"
Read all files under each directory, recursively.
.SH EXAMPLES
.nf
findish \-perm +644 /srv
.fi
"""


def _page(tmp_path: Path, src: str = PAGE, name: str = "findish.1.gz") -> Path:
    d = tmp_path / "man" / "man1"
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_bytes(gzip.compress(src.encode()))
    return p


def test_paragraphs_joined_fonts_inline_options_whole(tmp_path: Path):
    p = _page(tmp_path)
    doc = load_file(p, p.read_bytes())[0]
    flat = " ".join(doc.text.split())
    assert doc.title == "FINDISH(1)"
    assert "If TYPE is without-match, binary files are skipped." in flat
    assert "Match files whose permission bits include MODE." in flat
    # the pod2man indent is no text, the option tag and its description are one block
    assert "--recursive 4" not in flat and "Read all files under each directory" in flat
    blocks = [" ".join(b.split()) for b in doc.text.split("\n\n") if b.strip()]
    assert any("-perm +MODE Match files whose permission bits include MODE." in b for b in blocks), blocks
    assert any(b.startswith("--recursive Read all files") for b in blocks), blocks
    # no roff left, no word alone on a line
    assert ".B" not in doc.text and "\\f" not in doc.text
    assert all(len(ln.split()) != 1 or ln.strip().isupper() or ln.strip().startswith("-")
               for ln in doc.text.split("\n") if ln.strip()), doc.text  # fmt: skip


def test_citations_are_lines_of_the_rendered_text(tmp_path: Path, cfg: IngestConfig):
    p = _page(tmp_path)
    rep = ingest_paths(tmp_path / "ix", [tmp_path / "man"], cfg, progress=False)
    assert rep.skipped == [] and rep.chunks_total >= 1
    rendered = load_file(p, p.read_bytes())[0].text.split("\n")
    with Index.open(tmp_path / "ix", embedder=cfg.embedder_factory()) as ix:
        chunks = ix.get_chunks(list(range(1, rep.chunks_total + 1)))
    for c in chunks:
        assert c.text in "\n".join(rendered[c.line_start - 1 : c.line_end])
        assert c.text.split("\n")[0].strip() == rendered[c.line_start - 1].strip()


def test_groff_cannot_read_other_files_or_environment(tmp_path: Path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRETVALUE\n")
    monkeypatch.setenv("GDN2_SECRET_ENV", "ENVSECRETVALUE")
    src = (
        PAGE
        + f".so {secret}\n.mso {secret}\n.cf {secret}\n.trf {secret}\n"
        + f".cc @\n@so {secret}\n@cc .\n.sy echo SYSTEMRAN\n\\V[GDN2_SECRET_ENV]\n.nx {secret}\n"
    )
    p = _page(tmp_path, src)
    text = load_file(p, p.read_bytes())[0].text
    assert "TOPSECRETVALUE" not in text and "ENVSECRETVALUE" not in text and "SYSTEMRAN" not in text
    assert "binary files are skipped" in " ".join(text.split())


def test_runaway_page_falls_back_to_the_builtin_parser(tmp_path: Path, monkeypatch, caplog):
    # an endless loop printing text: groff is stopped by the timeout (or the output cap)
    src = ".TH LOOP 1\n.SH NAME\nloop \\- forever\n.while 1 \\{\\\nagain and again\n.\\}\n"
    p = _page(tmp_path, src, "loop.1.gz")
    monkeypatch.setattr(man_mod, "GROFF_TIMEOUT", 2.0)
    t = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="gdn2_ingest.loaders"):
        doc = load_file(p, p.read_bytes())[0]
    assert time.perf_counter() - t < 10
    assert "built-in parser" in caplog.text and ("timed out" in caplog.text or "output over" in caplog.text)
    assert "loop - forever" in doc.text and doc.title == "LOOP(1)"


def test_missing_groff_falls_back_with_a_logged_reason(tmp_path: Path, monkeypatch, caplog):
    p = _page(tmp_path)
    monkeypatch.setattr(man_mod, "GROFF", None)
    with caplog.at_level(logging.WARNING, logger="gdn2_ingest.loaders"):
        doc = load_file(p, p.read_bytes())[0]
    assert "groff not found" in caplog.text
    # the built-in parser's lines are the page source's lines; pod2man's indent no longer leaks
    assert len(doc.text.split("\n")) == len(PAGE.split("\n"))
    assert "--recursive 4" not in doc.text and "--recursive" in doc.text


def test_mdoc_page_rendered(tmp_path: Path):
    src = (
        ".Dd May 1, 2024\n.Dt FROBD 8\n.Os\n.Sh NAME\n.Nm frobd\n.Nd frobnicate daemon\n"
        ".Sh OPTIONS\n.Bl -tag -width Ds\n.It Fl p Ar port\nListen on\n.Ar port\ninstead of 80.\n.El\n"
    )
    p = _page(tmp_path, src, "frobd.8.gz")
    doc = load_file(p, p.read_bytes())[0]
    flat = " ".join(doc.text.split())
    assert doc.title == "FROBD(8)" and "frobd — frobnicate daemon" in flat
    assert "-p port Listen on port instead of 80." in flat


def test_page_growing_memory_forever_is_stopped(tmp_path: Path, caplog):
    # a string doubled forever: troff runs out of its address-space limit (or the timeout) in seconds
    src = ".TH GROW 1\n.SH NAME\ngrow \\- memory\n.ds s x\n.while 1 .as s \\*s\n"
    p = _page(tmp_path, src, "grow.1.gz")
    t = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="gdn2_ingest.loaders"):
        doc = load_file(p, p.read_bytes())[0]
    assert time.perf_counter() - t <= man_mod.GROFF_TIMEOUT + 5
    assert "built-in parser" in caplog.text and "grow - memory" in doc.text
