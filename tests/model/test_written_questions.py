"""Written training questions: the file's rules, locating answers, and samples built from them."""

from __future__ import annotations

import json
import random

from gdn2_model.data.corpus import Document
from gdn2_model.data.qa_v3 import V3SampleMaker
from gdn2_model.data.written import DEFAULT_FILE, WrittenQA, load, problems

TEXT = (
    "NAME\nfoo - frobnicate files\n\nOPTIONS\n-t SECONDS\nwait at most SECONDS;\n"
    "the default is 30 seconds\n\n" + "filler line about nothing in particular\n" * 30 + "EXIT STATUS\n"
    "2\nif serious trouble.\n"
)
DOCS = [
    Document("/x/foo.1", "support", "foo.1", TEXT),
    Document("/x/bar.1", "support", "bar.1", TEXT.replace("foo", "bar").replace("30 seconds", "9 minutes")),
]


def good(**kw) -> dict:
    d = {
        "id": "wq-support-1",
        "source": "/x/foo.1",
        "domain": "support",
        "question": "How long will it hang around before it gives up, unless told otherwise?",
        "answer": "30 seconds",
        "evidence": "wait at most SECONDS;\nthe default is 30 seconds",
    }
    return {**d, **kw}


def test_rules_accept_a_good_line_and_name_each_broken_rule():
    texts = {d.doc_id: d.text for d in DOCS}
    assert problems([good()], texts) == []
    bad = [
        good(id="a", answer="31 seconds", evidence="the default is 31 seconds"),  # not verbatim
        good(id="b", answer="hang", question="Hangs forever?"),  # answer not in evidence; short
        good(id="c", question="What is the default wait in seconds at most?"),  # copies the evidence
        good(id="d", source="/x/GPL-3"),  # unknown source
        good(id="e", domain="sports", question="Something else entirely, my friend?"),
        good(id="e", question="Another question that is different enough here?"),  # duplicate id
    ]
    errs = problems(bad, texts, excluded={"/x/GPL-3"})
    joined = "\n".join(errs)
    assert "(a): the evidence is not verbatim" in joined
    assert "(b): question under 4 words" in joined and "(b): the answer is not inside" in joined
    assert "(c):" in joined and "content words" in joined
    assert "(d): /x/GPL-3 is a document of an evaluation set" in joined
    assert "(e): domain 'sports'" in joined and "duplicate id" in joined


def test_locate_and_samples_hold_the_answer_and_its_evidence_lines():
    wq = WrittenQA(**good())
    a0, a1, e0, e1 = wq.locate(TEXT)
    assert TEXT[a0:a1] == "30 seconds" and e0 <= a0 < a1 <= e1 and TEXT[e0:e1] == wq.evidence
    assert WrittenQA(**good(evidence="not in the text 30 seconds")).locate(TEXT) is None
    maker = V3SampleMaker(DOCS, chunk_chars=200, p_unanswerable=0.3)
    seen_unanswerable = seen_answerable = 0
    for i in range(30):
        s = maker.sample_written(random.Random(i), 120, [wq])
        assert s is not None and s.question == wq.question and s.kind == "written"
        if s.answer is None:
            seen_unanswerable += 1
            assert all(not p.header.startswith("foo.1 (") for p in s.pieces)
            continue
        seen_answerable += 1
        s.check()
        p, cs, ce = s.answer
        assert s.pieces[p].text[cs:ce] == "30 seconds" and s.answer_text == "30 seconds"
        (_, es, ee) = s.evidence[1]
        assert es <= cs and ce <= ee  # the evidence cue covers the answer
    assert seen_unanswerable and seen_answerable
    # a question over a document the maker does not have yields no sample (the caller falls back)
    assert maker.sample_written(random.Random(0), 120, [WrittenQA(**good(source="/x/none"))]) is None


def test_shipped_file_follows_every_rule_that_needs_no_document():
    """The shipped questions load and pass the rules that need no document text (ids, duplicates, lengths,
    answer inside evidence, wording); verbatim-in-document is `check --data` against the prepared file."""
    items = [json.loads(x) for x in DEFAULT_FILE.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(load()) == len(items) >= 600
    assert problems(items, None) == []
    assert {d["domain"] for d in items} == {"legal", "support", "code"}


def test_training_holds_out_every_eighth_document_and_its_questions():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "reader_v3_train", Path(__file__).resolve().parents[2] / "bench" / "model" / "reader_v3_train.py"
    )
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    docs = [Document(f"/x/d{i}.1", "support", f"d{i}.1", TEXT.replace("foo", f"tool{i}")) for i in range(16)]
    written = [WrittenQA(**good(id=f"q{i}", source=d.doc_id)) for i, d in enumerate(docs)]
    train, train_docs, evals = rt.split_written(docs, written, eval_tokens=120, every=8)
    held = {"/x/d0.1", "/x/d2.1"}  # sorted paths: d0.1, d1.1, d10.1, ..., d15.1, d2.1 (the 9th), ...
    assert {w.source for w in train} == {d.doc_id for d in docs} - held
    assert {d.doc_id for d in train_docs} == {d.doc_id for d in docs} - held
    assert len(evals) == 2 and all(s.answer is not None and s.doc_id in held for s in evals)
