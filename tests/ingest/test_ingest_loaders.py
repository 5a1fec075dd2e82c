"""Each loader on small files written here (including a generated PDF and DOCX)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gdn2_ingest.loaders import CODE_LANGUAGES, SkipFile, detect_format, load_file


def _load(path: Path):
    return load_file(path, path.read_bytes())


def test_text_markdown_rst_titles(tmp_path: Path):
    (tmp_path / "a.md").write_text("# Install guide\n\nRun the installer.\n")
    (tmp_path / "b.rst").write_text("Release notes\n=============\n\nFixed a bug.\n")
    (tmp_path / "COPYING").write_text("\n  MIT License\n\nPermission is hereby granted.\n")
    md, rst, lic = (_load(tmp_path / n)[0] for n in ("a.md", "b.rst", "COPYING"))
    assert (md.fmt, md.title) == ("markdown", "Install guide")
    assert rst.fmt == "rst" and rst.title.startswith("b.rst: Release notes")
    assert (lic.fmt, lic.title) == ("text", "COPYING: MIT License")


def test_encoding_detected_for_latin1(tmp_path: Path):
    p = tmp_path / "notes.txt"
    text = (
        "Le café est une boisson. Cette crème brûlée était délicieuse, à côté du théâtre où nous allions.\n"
    )
    p.write_bytes(text.encode("latin-1") * 3)
    doc = _load(p)[0]
    assert doc.text == text * 3


def test_binary_and_empty_are_skipped(tmp_path: Path):
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02ELF" * 100)
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "empty.txt").write_text("  \n")
    for name, reason in (("blob.txt", "binary"), ("img.png", "binary"), ("empty.txt", "empty")):
        with pytest.raises(SkipFile, match=reason):
            _load(tmp_path / name)


def test_html_strips_boilerplate_and_marks_headings(tmp_path: Path):
    p = tmp_path / "page.html"
    p.write_text(
        "<html><head><title>Help: Printing</title><script>var x = 'SCRIPT';</script></head><body>"
        "<nav>Home | Products | NAVLINK</nav><main><h1>Printing</h1><p>Choose <b>File</b> then Print.</p>"
        "<h2>Duplex</h2><ul><li>Open settings</li><li>Pick two-sided</li></ul></main>"
        "<footer>Copyright FOOTER</footer></body></html>"
    )
    doc = _load(p)[0]
    assert doc.title == "Help: Printing"
    assert "# Printing" in doc.text and "## Duplex" in doc.text
    assert "Choose File then Print." in doc.text
    for junk in ("SCRIPT", "NAVLINK", "FOOTER"):
        assert junk not in doc.text


def test_pdf_pages_kept(tmp_path: Path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for i, body in enumerate(["Indemnification clause on the first page.", "Governing law is Delaware."]):
        pdf.add_page()
        pdf.multi_cell(0, 10, f"Page {i + 1}. {body}")
    p = tmp_path / "contract.pdf"
    pdf.output(str(p))
    doc = _load(p)[0]
    assert doc.fmt == "pdf" and len(doc.page_starts) == 2
    second = doc.text[doc.page_starts[1] :]
    assert "Governing law is Delaware" in second and "Indemnification" in doc.text[: doc.page_starts[1]]


def test_corrupt_pdf_skipped(tmp_path: Path):
    p = tmp_path / "broken.pdf"
    p.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage without xref")
    with pytest.raises(SkipFile, match="PDF"):
        _load(p)


def test_docx_headings_and_tables(tmp_path: Path):
    import docx

    d = docx.Document()
    d.add_heading("Employment Agreement", level=0)
    d.add_heading("Salary", level=1)
    d.add_paragraph("The Employee shall receive an annual salary.")
    t = d.add_table(rows=1, cols=2)
    t.rows[0].cells[0].text = "Bonus"
    t.rows[0].cells[1].text = "10%"
    p = tmp_path / "contract.docx"
    d.save(str(p))
    doc = _load(p)[0]
    assert doc.title == "Employment Agreement"
    assert "## Salary" in doc.text and "annual salary" in doc.text and "Bonus | 10%" in doc.text


def test_corrupt_docx_skipped(tmp_path: Path):
    p = tmp_path / "bad.docx"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SkipFile, match="DOCX"):
        _load(p)


EML = (
    "From: alice@example.com\nTo: support@example.com\nSubject: Printer offline\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <m1@example.com>\n\nMy printer shows offline.\n"
)


def test_eml_and_mbox_one_document_per_message(tmp_path: Path):
    (tmp_path / "one.eml").write_text(EML)
    doc = _load(tmp_path / "one.eml")[0]
    assert (
        doc.title == "Printer offline"
        and "From: alice@example.com" in doc.text
        and "shows offline" in doc.text
    )
    second = (
        EML.replace("Printer offline", "Refund request").replace("m1@", "m2@").replace("printer", "order")
    )
    mbox = (
        "From alice@example.com Mon Jan  1 10:00:00 2024\n"
        + EML
        + "\nFrom bob Mon Jan  1 11:00:00 2024\n"
        + second
    )
    (tmp_path / "inbox.mbox").write_text(mbox)
    docs = _load(tmp_path / "inbox.mbox")
    assert [d.title for d in docs] == ["Printer offline", "Refund request"]
    assert docs[1].line_offset == mbox.split("\n").index("From bob Mon Jan  1 11:00:00 2024") + 1
    assert docs[0].sub.startswith("1:m1@example.com")


def test_ticket_exports_one_record_per_document(tmp_path: Path):
    tickets = [
        {
            "id": 7,
            "subject": "Cannot log in",
            "body": "Login fails with error 403.",
            "created_at": "2024-01-01",
        },
        {
            "id": 8,
            "subject": "Slow export",
            "body": "CSV export takes minutes.",
            "comments": [{"body": "Same here"}],
        },
    ]
    (tmp_path / "t.json").write_text(json.dumps({"tickets": tickets}))
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(t) for t in tickets) + "\n")
    (tmp_path / "t.csv").write_text(
        'id,subject,body\n7,Cannot log in,"Login fails\nwith error 403."\n8,Slow,Export\n'
    )
    j, jl, c = (_load(tmp_path / n) for n in ("t.json", "t.jsonl", "t.csv"))
    assert [d.sub for d in j] == ["7", "8"] and j[0].title == "Cannot log in"
    assert "created_at" not in j[0].text and "comments.body: Same here" in j[1].text
    assert [d.line_offset for d in jl] == [1, 2]
    assert [d.line_offset for d in c] == [2, 4] and "Login fails\nwith error 403." in c[0].text
    only_body = load_file(tmp_path / "t.jsonl", (tmp_path / "t.jsonl").read_bytes(), record_fields=["body"])
    assert "subject" not in only_body[0].text


def test_invalid_json_skipped(tmp_path: Path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(SkipFile, match="invalid JSON"):
        _load(tmp_path / "x.json")


ROFF = r""".\" comment
.TH FROB 1 "2024" "frob 1.0"
.SH NAME
frob \- frobnicate the \fBwidgets\fR
.SH SYNOPSIS
.B frob
[\fB\-v\fR] \fIfile\fR
.SH DESCRIPTION
.PP
Frob reads \fIfile\fP and frobnicates it\(em quickly.
"""


def test_man_page_gz(tmp_path: Path, monkeypatch):
    p = tmp_path / "frob.1.gz"
    p.write_bytes(gzip.compress(ROFF.encode()))
    doc = _load(p)[0]
    assert doc.fmt == "man" and doc.title == "FROB(1)"
    # rendered by groff: headings at the margin, text indented under them
    lines = [ln.strip() for ln in doc.text.split("\n")]
    assert lines[lines.index("NAME") + 1] == "frob - frobnicate the widgets"
    assert "Frob reads file and frobnicates it\u2014 quickly." in doc.text
    # the built-in parser (no groff): one output line per source line
    monkeypatch.setattr("gdn2_ingest.loaders.man.GROFF", None)
    doc = _load(p)[0]
    lines = doc.text.split("\n")
    assert len(lines) == len(ROFF.split("\n"))
    assert lines[3] == "frob - frobnicate the widgets" and lines[2] == "# NAME"
    assert "Frob reads file and frobnicates it\u2014 quickly." in doc.text
    (tmp_path / "alias.1.gz").write_bytes(gzip.compress(b".so man1/frob.1\n"))
    with pytest.raises(SkipFile, match="alias"):
        _load(tmp_path / "alias.1.gz")
    (tmp_path / "bad.1.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(SkipFile, match="gzip"):
        _load(tmp_path / "bad.1.gz")


ASCIIDOCTOR = r""".TH "FLOCK" "1" "2022-05-11" "util\-linux 2.38.1" "User Commands"
.de URL
\fI\\$2\fP <\\$1>\\$3
..
.if \n[.g] \{\
.  mso www.tmac
.  am URL
.    ad l
.  .
.\}
.SH "NAME"
flock \- manage locks from shell scripts
"""


def test_man_macro_definitions_end_at_spaced_terminator(tmp_path: Path):
    # asciidoctor pages close `.am` with ".  ."; missing it once swallowed whole util-linux pages
    p = tmp_path / "flock.1.gz"
    p.write_bytes(gzip.compress(ASCIIDOCTOR.encode()))
    doc = _load(p)[0]
    assert "flock - manage locks from shell scripts" in doc.text and doc.title == "FLOCK(1)"


def test_code_languages_by_extension():
    langs = set(CODE_LANGUAGES.values())
    assert len(langs) >= 10
    assert detect_format(Path("x/main.rs")) == ("code", "rust")
    assert detect_format(Path("x/App.tsx")) == ("code", "tsx")
    assert detect_format(Path("/usr/share/man/man1/ls.1.gz"))[0] == "man"


def test_short_western_text_decoded_as_windows_1252(tmp_path: Path):
    # charset-normalizer ties several code pages on short text and used to pick cp1250 / cp775
    cases = {
        "fr.txt": ("Café crème brûlée: le délai de préavis est de trente jours.\n", "latin-1"),
        "es.txt": ("Señor, la cláusula 3 está vigente. Año fiscal.\n", "cp1252"),
        "ru.txt": ("Привет, мир! Договор действует.\n", "cp1251"),
    }
    for name, (text, enc) in cases.items():
        (tmp_path / name).write_bytes(text.encode(enc))
        assert _load(tmp_path / name)[0].text == text


def test_rebuilt_documents_cite_their_source_lines(tmp_path: Path):
    # the indexed text of an e-mail or a ticket is rebuilt (headers, `key: value` lines), so its
    # line count says nothing about the file: each document cites the lines it came from
    (tmp_path / "t.csv").write_text(
        'id,subject,body\n7,Cannot log in,"Login fails\nwith 403."\n8,Slow,Export\n'
    )
    (tmp_path / "t.jsonl").write_text(
        '{"id": 1, "title": "A", "body": "x"}\n{"id": 2, "title": "B", "body": "y"}\n'
    )
    mbox = (
        "From a Mon Jan  1 10:00:00 2024\nSubject: One\n\nfirst body\n\n"
        "From b Mon Jan  1 11:00:00 2024\nSubject: Two\n\nsecond\nbody\n"
    )
    (tmp_path / "m.mbox").write_text(mbox)
    (tmp_path / "m.eml").write_text("Subject: Hi\nFrom: a@example.com\n\nline one\nline two\n")
    spans = {
        n: [d.source_lines for d in _load(tmp_path / n)] for n in ("t.csv", "t.jsonl", "m.mbox", "m.eml")
    }
    assert spans == {
        "t.csv": [(2, 3), (4, 4)],
        "t.jsonl": [(1, 1), (2, 2)],
        "m.mbox": [(1, 4), (6, 10)],
        "m.eml": [(1, 5)],
    }


def test_damaged_pdf_is_quiet(tmp_path: Path, capfd):
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Retention policy. Records are kept for three years. " * 20)
    data = bytes(pdf.output())
    (tmp_path / "cut.pdf").write_bytes(data[: len(data) // 2])
    with pytest.raises(SkipFile, match="corrupt PDF"):
        _load(tmp_path / "cut.pdf")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_gzipped_text_loaded_by_inner_name(tmp_path: Path):
    # /usr/share/doc is full of changelog.Debian.gz and NEWS.md.gz
    log = "pkg (1.2-1) unstable; urgency=medium\n\n  * Fix the frobnicator crash.\n"
    (tmp_path / "changelog.Debian.gz").write_bytes(gzip.compress(log.encode()))
    (tmp_path / "NEWS.md.gz").write_bytes(gzip.compress(b"# News\n\n## 2.0\n\nNew parser.\n"))
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(b"\x00" * 10))
    (tmp_path / "bad.txt.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    ch = _load(tmp_path / "changelog.Debian.gz")[0]
    assert (ch.text, ch.fmt, ch.path) == (log, "text", str(tmp_path / "changelog.Debian.gz"))
    news = _load(tmp_path / "NEWS.md.gz")[0]
    assert (news.fmt, news.title) == ("markdown", "News")
    with pytest.raises(SkipFile, match="unsupported type"):
        _load(tmp_path / "x.tar.gz")
    with pytest.raises(SkipFile, match="corrupt gzip"):
        _load(tmp_path / "bad.txt.gz")
    # the cap is IngestConfig.max_expanded_bytes, passed down by the pipeline
    p = tmp_path / "changelog.Debian.gz"
    with pytest.raises(SkipFile, match="oversized once decompressed"):
        load_file(p, p.read_bytes(), max_expanded_bytes=20)
    assert load_file(p, p.read_bytes(), max_expanded_bytes=len(log))[0].text == log


def test_csv_with_semicolons_or_tabs(tmp_path: Path):
    # spreadsheets in many locales export ';'-separated CSV; it used to become one column
    (tmp_path / "s.csv").write_bytes(b'\xef\xbb\xbfid;subject;body\n7;Broken link;"Pricing page; 404"\n')
    (tmp_path / "t.csv").write_text("id\tsubject\tbody\n8\tDark mode\tAdd a toggle, please\n")
    (s,) = _load(tmp_path / "s.csv")
    (t,) = _load(tmp_path / "t.csv")
    assert (s.sub, s.text) == ("7", "subject: Broken link\nbody: Pricing page; 404\n")
    assert (t.sub, t.fmt, t.text) == ("8", "record", "subject: Dark mode\nbody: Add a toggle, please\n")
