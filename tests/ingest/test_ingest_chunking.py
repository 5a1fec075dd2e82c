"""Chunk boundaries per domain, token limits (special tokens included) and line/page anchors."""

from __future__ import annotations

import random

import pytest
from ingest_corpus import CODE, LEGAL, SUPPORT

from gdn2_ingest.chunking import chunk_document, detect_domain
from gdn2_ingest.embed import SentenceTransformerEmbedder, TokenCounter
from gdn2_ingest.types import Document


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(SentenceTransformerEmbedder().load_tokenizer())


def _chunks(
    counter, text, domain, fmt="text", target=200, overlap=32, language=None, path="/x/doc.txt", **kw
):
    doc = Document(path=path, text=text, title="Doc", fmt=fmt, language=language, **kw)
    return chunk_document(doc, domain, counter, target, overlap, 256)


def _assert_exact_slices(text, chunks, counter):
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert counter.count([c.embed_text])[0] == c.tokens <= 256


def test_legal_clause_with_heading_and_subclauses_stays_whole(counter):
    dom, chunks = _chunks(counter, LEGAL, "legal", target=64, overlap=8)
    assert dom == "legal"
    _assert_exact_slices(LEGAL, chunks, counter)
    conf = [c for c in chunks if "3. Confidentiality." in c.text]
    assert len(conf) == 1
    # the heading, (a) and (b) are in one chunk, cited as clause 3
    assert "(a) Each party" in conf[0].text and "(b) Neither party" in conf[0].text
    assert "3. Confidentiality" in conf[0].section
    # definitions are never cut
    for term in ('"Customer Data" means', '"Service" means'):
        holder = [c for c in chunks if term in c.text]
        assert len(holder) == 1
        start = LEGAL.index(term)
        end = LEGAL.index("\n\n", start)
        assert holder[0].start <= start and holder[0].end >= end
    # numbered sub-clause labels
    fees = [c for c in chunks if "2.1 Customer shall pay" in c.text][0]
    assert "2. Fees" in fees.section or "2.1" in fees.section


def test_long_clause_split_on_sentences_with_overlap(counter):
    sentences = [
        f"The Licensee shall comply with obligation number {i} in every territory." for i in range(60)
    ]
    text = "7. Obligations.\n\n" + " ".join(sentences) + "\n"
    _, chunks = _chunks(counter, text, "legal", target=80, overlap=16)
    assert len(chunks) > 3
    _assert_exact_slices(text, chunks, counter)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end, "consecutive pieces of one long clause overlap"
        assert a.end - b.start < len(text) // 4
        assert text[b.start - 1].isspace(), "cuts fall between sentences"
    assert all(c.section.startswith("7. Obligations") for c in chunks)


def test_support_question_kept_with_answer(counter):
    _, chunks = _chunks(counter, SUPPORT, "support", fmt="markdown", target=48, overlap=8)
    _assert_exact_slices(SUPPORT, chunks, counter)
    q = [c for c in chunks if "How do I reset my password?" in c.text]
    assert len(q) == 1 and "valid\nfor one hour" in q[0].text
    assert q[0].section in ("Resetting your password", "How do I reset my password?")
    b = [c for c in chunks if "Why was I charged twice?" in c.text]
    assert len(b) == 1 and "pending authorisation" in b[0].text


def test_code_functions_and_methods_whole_with_symbols(counter):
    _, chunks = _chunks(
        counter, CODE, "code", fmt="code", language="python", target=40, overlap=0, path="/x/t.py"
    )
    _assert_exact_slices(CODE, chunks, counter)
    add = [c for c in chunks if "def add(a, b):" in c.text]
    assert len(add) == 1 and "return a + b" in add[0].text and add[0].section == "add"
    greet = [c for c in chunks if "def greet(self):" in c.text]
    assert len(greet) == 1 and 'return f"hello {self.name}"' in greet[0].text
    assert greet[0].section == "Greeter.greet"


def test_long_function_split_between_statements(counter):
    body = "\n".join(f"    value_{i} = compute_something(value_{i - 1}, factor={i})" for i in range(1, 120))
    src = f"def long_one(value_0):\n    '''Doc.'''\n{body}\n    return value_119\n"
    _, chunks = _chunks(counter, src, "code", fmt="code", language="python", path="/x/l.py")
    assert len(chunks) >= 3
    _assert_exact_slices(src, chunks, counter)
    for c in chunks:
        assert c.section == "long_one"
        # every cut is at a line boundary: chunks hold whole statements
        assert src[c.end : c.end + 1] in ("\n", "")
        assert src[src.rfind("\n", 0, c.start) + 1 : c.start].strip() == ""


@pytest.mark.parametrize(
    ("language", "src", "symbol"),
    [
        (
            "javascript",
            "function alpha(x) {\n  return x + 1;\n}\nclass Beta {\n  run() { return 2; }\n}\n",
            "alpha",
        ),
        ("go", "package main\n\nfunc Alpha(x int) int {\n\treturn x + 1\n}\n", "Alpha"),
        ("rust", "fn alpha(x: i32) -> i32 {\n    x + 1\n}\nstruct Beta { a: i32 }\n", "alpha"),
        ("java", "class Beta {\n  int alpha(int x) { return x + 1; }\n}\n", "Beta"),
        ("c", "int alpha(int x) {\n  return x + 1;\n}\n", "alpha"),
        ("ruby", "def alpha(x)\n  x + 1\nend\n", "alpha"),
    ],
)
def test_code_grammars(counter, language, src, symbol):
    _, chunks = _chunks(counter, src * 30, "code", fmt="code", language=language, target=40, overlap=0)
    assert any(c.section.startswith(symbol) for c in chunks), [c.section for c in chunks]
    _assert_exact_slices(src * 30, chunks, counter)


def test_never_over_window_on_random_text(counter):
    rng = random.Random(0)
    words = [
        "antidisestablishmentarianism",
        "the",
        "of",
        "Kubernetes",
        "µs",
        "naïve",
        "x" * 40,
        "(a)",
        "1.2",
        "?",
    ]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 400))) for _ in range(30))
    for domain in ("legal", "support", "code"):
        _, chunks = _chunks(counter, text, domain, fmt="text", target=250, overlap=40)
        _assert_exact_slices(text, chunks, counter)
        covered = sum(len(text[c.start : c.end].split()) for c in chunks)
        assert covered >= len(text.split()), "no text dropped"


def test_line_spans_and_pages(counter):
    lines = [f"Paragraph {i} says something about topic {i}." for i in range(40)]
    text = "\n\n".join(lines) + "\n"
    _, chunks = _chunks(counter, text, "support", target=40, overlap=0, line_offset=0)
    src_lines = text.split("\n")
    for c in chunks:
        span = "\n".join(src_lines[c.line_start - 1 : c.line_end])
        assert span.strip() == c.text.strip()
    # with a line offset (a record inside a file) lines are shifted
    _, shifted = _chunks(counter, text, "support", target=40, overlap=0, line_offset=100)
    assert [c.line_start for c in shifted] == [c.line_start + 99 for c in chunks]
    half = len(text) // 2
    _, paged = _chunks(counter, text, "support", fmt="pdf", target=40, overlap=0, page_starts=[0, half])
    for c in paged:
        assert c.page == (1 if c.start < half else 2)
        # no chunk crosses the page boundary
        assert c.end <= half or c.start >= half


def test_domain_detection():
    assert detect_domain(Document("/a/x.py", "def f(): pass", "x", "code")) == "code"
    assert detect_domain(Document("/a/inbox.mbox", "hi", "x", "email")) == "support"
    assert detect_domain(Document("/a/notes.txt", LEGAL * 3, "x", "text")) == "legal"
    assert detect_domain(Document("/a/guide.md", SUPPORT, "x", "markdown")) == "support"
    assert detect_domain(Document("/legal/LICENSE", "short", "x", "text")) == "legal"


def test_short_pdf_pages_are_separate_chunks(counter):
    pages = ["The supplier indemnifies the buyer.\n", "Payment is due within 60 days.\n"]
    text = "\n".join(pages)
    _, chunks = _chunks(counter, text, "legal", fmt="pdf", page_starts=[0, len(pages[0]) + 1])
    assert [(c.text, c.page) for c in chunks] == [(pages[0].strip(), 1), (pages[1].strip(), 2)]


def test_clause_drawn_in_a_box_is_cited_by_its_own_number(counter):
    # MPL-2.0 draws sections 6 and 7 inside '*' boxes; they were cited as the clause before them
    def box(lines):
        rule = "*" * 40
        return "\n".join([rule, *(f"*  {ln:<35} *" for ln in lines), rule])

    text = (
        "5. Termination\n\n5.1 Rights end if You fail to comply with this License.\n\n"
        + box(["6. Disclaimer of Warranty", "-------------------------", "", "Software is provided as is."])
        + "\n\n"
        + box(["7. Limitation of Liability", "--------------------------", "", "No party is liable."])
        + "\n\n8. Litigation\n\nAny litigation is brought in the courts of the defendant.\n"
    )
    _, chunks = _chunks(counter, text, "legal", target=40, overlap=0)
    _assert_exact_slices(text, chunks, counter)
    for needle, clause in (("provided as is", "6. Disclaimer"), ("No party is liable", "7. Limitation")):
        holder = [c for c in chunks if needle in c.text]
        assert holder and all(clause in c.section for c in holder), [c.section for c in holder]
        assert all("5." not in c.section for c in holder)


def test_debian_changelog_entries_are_sections(counter):
    entry = (
        "bash ({v}) unstable; urgency=medium\n\n"
        "  * Apply upstream patches {v}.\n  * Fix a crash in read -e.\n\n"
        " -- Matthias Klose <doko@debian.org>  Mon, 02 Jan 2023 13:06:21 +0100\n\n"
    )
    text = "".join(entry.format(v=f"5.{i}-1") for i in range(12, 0, -1))
    _, chunks = _chunks(counter, text, "support", target=60, overlap=0)
    _assert_exact_slices(text, chunks, counter)
    assert len(chunks) > 12
    for c in chunks:
        # the entry the chunk starts in, then every entry that starts inside it
        head = text.rfind("bash (", 0, c.start + len("bash ("))
        entries = [text[head : text.index(";", head)]]
        entries += [ln.split(";")[0] for ln in c.text.split("\n")[1:] if ln.startswith("bash (")]
        assert c.section == " | ".join(entries)


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_code_comments_stay_with_the_code_below_them(counter, language):
    # bisect.py was cut between the two lines of a comment, leaving its second half to open a chunk
    if language == "python":
        step = (
            "    # note {i}: the comparison uses < to match\n    # the order of sort() {i}\n    x{i} = f(x)\n"
        )
        src = "def work(x):\n" + "".join(step.format(i=i) for i in range(40)) + "    return x\n"
        first = "# note"
    else:
        step = "  // note {i}: the comparison uses < to match\n  // the order of sort {i}\n  x{i} = f(x);\n"
        src = "function work(x) {\n" + "".join(step.format(i=i) for i in range(40)) + "  return x;\n}\n"
        first = "// note"
    _, chunks = _chunks(counter, src, "code", fmt="code", language=language, target=60, overlap=0)
    assert len(chunks) >= 4
    _assert_exact_slices(src, chunks, counter)
    for c in chunks[1:]:
        assert c.text.startswith(first), c.text[:60]
