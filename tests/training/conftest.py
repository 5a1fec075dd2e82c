"""Small real-text fixtures for the reader-training tests: a dozen documents and a 2k-token BPE."""

from __future__ import annotations

import gzip
import sysconfig
from pathlib import Path

import pytest

from gdn2_model.data.corpus import Document, strip_troff
from gdn2_model.tokenizer import train_tokenizer

LEGAL = ["Apache-2.0", "GPL-3", "MPL-2.0", "BSD", "LGPL-2.1", "Artistic"]
MAN = ["ls.1.gz", "grep.1.gz", "tar.1.gz", "cp.1.gz", "sort.1.gz", "find.1.gz"]
CODE = ["argparse.py", "shlex.py", "textwrap.py", "string.py", "difflib.py", "calendar.py"]


def _docs() -> list[Document]:
    docs = []
    for name in LEGAL:
        p = Path("/usr/share/common-licenses") / name
        if p.is_file():
            docs.append(Document(str(p), "legal", name, p.read_text(errors="replace")))
    for name in MAN:
        p = Path("/usr/share/man/man1") / name
        if p.is_file():
            with gzip.open(p) as f:
                docs.append(Document(str(p), "support", name[:-3], strip_troff(f.read().decode())))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in CODE:
        p = stdlib / name
        if p.is_file():
            docs.append(Document(str(p), "code", name, p.read_text()))
    return docs


@pytest.fixture(scope="session")
def docs() -> list[Document]:
    d = _docs()
    domains = {x.domain for x in d}
    if domains != {"legal", "support", "code"}:
        pytest.skip(f"real text of every domain needed (found {sorted(domains)}): not a Debian-like machine")
    return d


@pytest.fixture(scope="session")
def tok(docs):
    return train_tokenizer([d.text for d in docs], vocab_size=2000)
