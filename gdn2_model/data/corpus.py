"""Real text found on every Debian machine, read into documents for the reader's training data.

Three domains, as in the product: **legal** (`/usr/share/common-licenses`, the `copyright` files of
`/usr/share/doc`), **support** (man pages with their troff stripped, READMEs and other docs under
`/usr/share/doc`) and **code** (the Python standard library). Every document gets a stable id, and
`split_of(doc_id)` assigns it to `train` or `heldout` by a hash of that id, so a document never
lands on both sides however the corpus is re-read or sub-sampled.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import random
import re
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

DOMAINS = ("legal", "support", "code")
# one document in HELDOUT_MOD goes to the held-out side
HELDOUT_MOD = 10


@dataclass(frozen=True)
class Document:
    """One source file as plain text; `doc_id` is its path, the unit of the train/held-out split."""

    doc_id: str
    domain: str
    title: str
    text: str


def split_of(doc_id: str) -> str:
    """`train` or `heldout`, fixed by a hash of the document id (never by position or sampling)."""
    h = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:8], 16)
    return "heldout" if h % HELDOUT_MOD == 0 else "train"


_TROFF_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_TROFF_ESC = {
    r"\-": "-",
    r"\(em": "-",
    r"\(en": "-",
    r"\(aq": "'",
    r"\(dq": '"',
    r"\(lq": '"',
    r"\(rq": '"',
    r"\(oq": "'",
    r"\(cq": "'",
    r"\(bu": "*",
    r"\e": "\\",
    r"\&": "",
    r"\|": "",
    r"\ ": " ",
    r"\~": " ",
    r"\,": "",
    r"\/": "",
    r"\(co": "(c)",
    r"\(rg": "(R)",
    r"\^": "",
    r"\:": "",
    r"\%": "",
}
_TROFF_REST = re.compile(r"\\(\*\[[^\]]*\]|\*\(..|\*.|\(..|\[[^\]]*\]|s[-+]?\d|n.|[a-zA-Z])")


def _troff_inline(s: str) -> str:
    s = _TROFF_FONT.sub("", s)
    for k, v in _TROFF_ESC.items():
        s = s.replace(k, v)
    return _TROFF_REST.sub("", s)


def strip_troff(src: str) -> str:
    """Turn a man page's troff source into readable text (headings, paragraphs, option tags on own lines)."""
    out: list[str] = []
    for raw in src.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '.\\"')) or line == ".":
            continue
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            if not parts:
                continue
            macro, arg = parts[0], (parts[1] if len(parts) > 1 else "")
            if macro in ("SH", "SS"):
                out.append("")
                out.append(
                    _troff_inline(arg.strip('"')).upper() if macro == "SH" else _troff_inline(arg.strip('"'))
                )
            elif macro in ("B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB"):
                words = re.findall(r'"[^"]*"|\S+', arg)
                joiner = " " if macro in ("B", "I", "SM", "SB") else ""
                out.append(joiner.join(_troff_inline(w.strip('"')) for w in words))
            elif macro in ("PP", "P", "LP", "TP", "IP", "sp", "br"):
                out.append("")
                if macro == "IP" and arg:
                    out.append(_troff_inline(arg.split('"')[1] if arg.startswith('"') else arg.split()[0]))
            elif macro in ("TH", "so"):
                continue
            elif macro in (
                "Nm",
                "Fl",
                "Ar",
                "Op",
                "Pa",
                "Xr",
                "It",
                "Dl",
                "Li",
                "Sy",
                "Em",
                "Ql",
                "Cm",
                "Ev",
            ):
                out.append(_troff_inline(arg))
            continue
        out.append(_troff_inline(line))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_text(path: Path, max_bytes: int) -> str | None:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                data = f.read(max_bytes)
        else:
            data = path.read_bytes()[:max_bytes]
    except (OSError, EOFError):
        return None
    if b"\x00" in data[:4096]:
        return None
    return data.decode("utf-8", errors="replace")


def _legal(root: Path) -> Iterator[Document]:
    for p in sorted((root / "common-licenses").glob("*")):
        if p.is_file() and (t := _read_text(p, 400_000)):
            yield Document(str(p), "legal", p.name, t)
    for p in sorted((root / "doc").glob("*/copyright")):
        if (t := _read_text(p, 200_000)) and len(t) > 400:
            yield Document(str(p), "legal", f"{p.parent.name} copyright", t)


def _support(root: Path) -> Iterator[Document]:
    for sec in ("man1", "man5", "man7", "man8"):
        for p in sorted((root / "man" / sec).glob("*.gz")):
            src = _read_text(p, 300_000)
            if not src or src.lstrip().startswith(".so "):
                continue
            t = strip_troff(src)
            if len(t) > 300:
                yield Document(str(p), "support", p.name.removesuffix(".gz"), t)
    for p in sorted((root / "doc").rglob("*")):
        name = p.name.lower()
        if not p.is_file() or name == "copyright" or "changelog" in name:
            continue
        if not (
            name.startswith(("readme", "news", "faq", "todo", "usage")) or name.endswith((".md", ".txt"))
        ):
            continue
        if (t := _read_text(p, 200_000)) and len(t) > 300:
            yield Document(str(p), "support", f"{p.parent.name}/{p.name}", t)


def _code(stdlib: Path) -> Iterator[Document]:
    for p in sorted(stdlib.rglob("*.py")):
        rel = p.relative_to(stdlib)
        if rel.parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel.parts:
            continue
        if (t := _read_text(p, 300_000)) and len(t) > 300:
            yield Document(str(p), "code", str(rel), t)


def iter_documents(share: str | Path = "/usr/share", stdlib: str | Path | None = None) -> Iterator[Document]:
    """Every usable document on this machine, domain by domain, in a deterministic order."""
    share = Path(share)
    yield from _legal(share)
    yield from _support(share)
    yield from _code(Path(stdlib or sysconfig.get_paths()["stdlib"]))


def build_corpus(
    out: str | Path,
    max_chars: dict[str, int] | None = None,
    seed: int = 0,
    docs: Iterable[Document] | None = None,
) -> dict[str, int]:
    """Sample documents per domain up to a character budget and write them as xz-compressed JSON lines.

    The file is what travels to the GPU machine (which has none of this text). Returns the number of
    documents written per domain.
    """
    max_chars = max_chars or {"legal": 6_000_000, "support": 30_000_000, "code": 20_000_000}
    by_domain: dict[str, list[Document]] = {d: [] for d in DOMAINS}
    for doc in docs if docs is not None else iter_documents():
        by_domain[doc.domain].append(doc)
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    with lzma.open(out, "wt", encoding="utf-8", preset=6) as f:
        for domain, items in by_domain.items():
            rng.shuffle(items)
            used = 0
            counts[domain] = 0
            for doc in items:
                if used >= max_chars[domain]:
                    break
                f.write(json.dumps(asdict(doc)) + "\n")
                used += len(doc.text)
                counts[domain] += 1
    return counts


def load_corpus(path: str | Path, split: str | None = None) -> list[Document]:
    """Read a corpus file written by `build_corpus`; `split` keeps only `train` or `heldout` documents."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    opener = lzma.open if str(path).endswith(".xz") else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = Document(**json.loads(line))
            if split is None or split_of(d.doc_id) == split:
                docs.append(d)
    return docs
