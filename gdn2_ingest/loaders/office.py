"""HTML (boilerplate stripped), PDF (text per page, pages kept) and DOCX (headings marked) loaders."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text, titled, why
from gdn2_ingest.types import Document

_BOILERPLATE = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "button",
)
_BLOCKS = (
    "p", "div", "section", "article", "main", "li", "ul", "ol", "table", "tr", "pre", "blockquote",
    "dt", "dd", "dl", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th",
)  # fmt: skip


def _tidy(text: str) -> str:
    lines = [re.sub(r"[ \t\u00a0]+", " ", ln).strip() for ln in text.split("\n")]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return out.strip() + "\n"


def html_to_text(html: str) -> tuple[str, str | None]:
    """Main text of an HTML page with headings as '## ...' lines; returns (text, <title>)."""
    import warnings

    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        # a short page that looks like a URL, or XHTML: still a page; ingest prints nothing itself
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(_BOILERPLATE):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    for tag in root.find_all(_BLOCKS):
        if tag.name and tag.name[0] == "h" and tag.name[1:].isdigit():
            tag.insert_before("\n\n" + "#" * int(tag.name[1:]) + " ")
            tag.insert_after("\n\n")
        elif tag.name in ("td", "th"):
            tag.insert_after(" | ")
        elif tag.name == "li":
            tag.insert_before("\n- ")
        else:
            tag.insert_before("\n")
            tag.insert_after("\n")
    return _tidy(root.get_text()), title


def load_html(path: Path, data: bytes) -> list[Document]:
    html = decode_text(data)
    try:
        text, title = html_to_text(html)
    except Exception as exc:  # noqa: BLE001 - html.parser asserts on some malformed markup ('<![')
        raise SkipFile(f"unparsable HTML ({why(exc, 80)})") from None
    if not text.strip():
        raise SkipFile("no text in HTML")
    return [Document(path=str(path), text=text, title=title or titled(path, text), fmt="html")]


def load_pdf(path: Path, data: bytes) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf logs repairs of damaged files ("EOF marker not found") as warnings; with no handler set up
    # by the app, Python prints them on stderr. A NullHandler keeps ingest quiet and still lets them
    # propagate to handlers the app configures.
    pdf_log = logging.getLogger("pypdf")
    if not any(isinstance(h, logging.NullHandler) for h in pdf_log.handlers):
        pdf_log.addHandler(logging.NullHandler())
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise SkipFile("encrypted PDF")
        page_objs = list(reader.pages)
    except SkipFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SkipFile(f"corrupt PDF ({why(exc, 80)})") from None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files (NotImplementedError, ...)
        raise SkipFile(f"corrupt PDF ({why(exc, 80)})") from None
    # a page pypdf cannot read is left empty (and logged) rather than losing the readable ones
    pages, bad = [], []
    for i, p in enumerate(page_objs, start=1):
        try:
            pages.append(p.extract_text() or "")
        except Exception as exc:  # noqa: BLE001 - same as above, for one page
            pages.append("")
            bad.append(f"p.{i} {why(exc, 60)}")
    try:
        meta_title = (reader.metadata.title if reader.metadata else None) or None
        meta_title = str(meta_title) if meta_title is not None else None
    except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
        meta_title = None
    if bad and len(bad) == len(pages):
        raise SkipFile(f"corrupt PDF (no page readable: {bad[0]})")
    if bad:
        logging.getLogger("gdn2_ingest.loaders").warning(
            "%s: unreadable PDF pages left empty: %s", path.name.encode("utf-8", "backslashreplace").decode(),
            "; ".join(bad)[:300],
        )  # fmt: skip
    parts, starts, pos = [], [], 0
    for page in pages:
        page = page.replace("\r\n", "\n").replace("\r", "\n").strip("\n") + "\n"
        starts.append(pos)
        parts.append(page)
        pos += len(page) + 1
    text = "\n".join(parts)
    if not text.strip():
        raise SkipFile("PDF has no extractable text (scanned?)")
    title = meta_title or titled(path, text)
    return [Document(path=str(path), text=text, title=title, fmt="pdf", page_starts=starts)]


def _check_zip(data: bytes, cap: int) -> None:
    """SkipFile for a DOCX whose parts would expand past `cap` bytes (a zip bomb) or that is no zip:
    the sizes are read from the zip directory, before anything is decompressed."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise SkipFile(f"corrupt DOCX ({type(exc).__name__})") from None
    if total > cap:
        raise SkipFile(f"oversized once decompressed ({total} > {cap} bytes, max_expanded_bytes)")


def load_docx(path: Path, data: bytes, max_expanded_bytes: int = 50_000_000) -> list[Document]:
    import docx
    from docx.table import Table

    _check_zip(data, max_expanded_bytes)
    try:
        d = docx.Document(io.BytesIO(data))
        lines, title = _docx_lines(d, Table)
    except Exception as exc:  # noqa: BLE001 - python-docx raises zipfile/KeyError/lxml/AttributeError on bad files
        raise SkipFile(f"corrupt DOCX ({why(exc, 80)})") from None
    text = "\n".join(lines).strip() + "\n"
    if not text.strip():
        raise SkipFile("DOCX has no text")
    return [Document(path=str(path), text=text, title=title or titled(path, text), fmt="docx")]


def _docx_lines(d, Table) -> tuple[list[str], str | None]:  # noqa: N803 - the class, passed in
    lines: list[str] = []
    title = d.core_properties.title or None
    for block in d.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                lines.append(" | ".join(c.text.strip() for c in row.cells))
            lines.append("")
            continue
        txt = block.text.strip()
        if not txt:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        if style == "Title":
            title = title or txt
            lines += [f"# {txt}", ""]
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            lines += ["#" * min(6, int(style[7:].strip()) + 1) + " " + txt, ""]
        else:
            lines += [txt, ""]
    return lines, title
