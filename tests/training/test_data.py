"""Data generators: answers verbatim at their spans, split by document, prompt token map exact."""

from __future__ import annotations

import random

import pytest

from gdn2_model.data.corpus import build_corpus, load_corpus, split_of, strip_troff
from gdn2_model.data.niah import TASKS, NeedleTaskMaker
from gdn2_model.data.qa import QATaskMaker, code_questions, legal_questions, support_questions, wh_questions
from gdn2_model.prompt import ContextPiece, build_reader_input
from gdn2_model.tokenizer import ANSWER, BOS, CONTEXT, DOC, QUESTION, SEP
from gdn2_model.training_data import encode_sample


@pytest.mark.parametrize("domain", ["legal", "support", "code"])
def test_qa_answers_are_verbatim_at_their_spans(docs, domain):
    maker = QATaskMaker(docs)
    rng = random.Random(3)
    tasks = set()
    for _ in range(40):
        s = maker.sample(rng, 1500, domain)
        s.check()
        a = s.answers[0]
        assert s.pieces[a.piece].text[a.char_start : a.char_end] == a.text
        assert a.text.strip()
        tasks.add(s.task)
    assert tasks == {"qa-extract", "qa-cloze", "qa-wh"}


def test_domain_generators_find_their_patterns():
    legal = 'The "Licensor" shall mean the copyright owner or entity authorized by the copyright owner.'
    ((q, s, e),) = legal_questions(legal, "Apache")
    assert legal[s:e].startswith("the copyright owner") and "Licensor" in q
    man = "-a, --all\ndo not ignore entries starting with .\n"
    ((q, s, e),) = support_questions(man, "ls.1")
    assert q == "What does the -a option of ls do?" and man[s:e] == "do not ignore entries starting with ."
    code = 'def fill(text, width=70, **kwargs):\n    """Fill a single paragraph of text."""\n'
    qs = code_questions(code, "textwrap.py")
    assert (
        "In textwrap, what is the default of parameter width of fill()?",
        code.index("70"),
        code.index("70") + 2,
    ) in qs
    assert any(code[s:e] == "Fill a single paragraph of text." for _, s, e in qs)


def test_wh_questions_take_their_words_from_the_sentence_and_answer_what_follows():
    text = (
        "Each copy must be accompanied by a written offer, valid for at least three years, to give it.\n"
        "You must give all recipients a copy of this License along with the Program.\n"
        "The default timeout is 10 seconds unless set otherwise."
    )
    got = {q.removeprefix("In GPL, ").lower(): text[s:e] for q, s, e in wh_questions(text, "GPL")}
    assert got["what must you give?"] == "all recipients a copy of this License along with the Program"
    assert got["how long be accompanied by a written offer, valid for?"] == "at least three years"
    assert got["what is the default timeout?"] == "10 seconds unless set otherwise"
    # clause fragments ("what is the user that there?") make no question
    assert wh_questions("We tell the user that there is no warranty for the work.", "GPL") == []


@pytest.mark.parametrize("task", TASKS)
def test_niah_needles_are_verbatim(docs, task):
    maker = NeedleTaskMaker(docs)
    rng = random.Random(5)
    for _ in range(5):
        s = maker.sample(rng, task, 3000)
        s.check()
        assert s.task == task
        values = {a.text for a in s.answers}
        if task == "mv-niah":
            assert len(s.answers) == 4 and len(values) == 4
        for q, answers in s.meta.get("queries", []):
            for a in answers:
                assert s.pieces[a.piece].text[a.char_start : a.char_end] == a.text
                assert a.text in q or a.text not in q  # a question never leaks its value
                assert a.text not in q


def test_niah_rejects_unknown_task(docs):
    with pytest.raises(ValueError, match="unknown NIAH task"):
        NeedleTaskMaker(docs).sample(random.Random(0), "niah-9", 1000)


def test_split_is_by_document_and_never_shared(docs, tmp_path):
    # many synthetic ids: the split is a pure function of the id, about 1 in 10 held out
    ids = [f"/doc/{i}" for i in range(2000)]
    held = [i for i in ids if split_of(i) == "heldout"]
    assert 120 < len(held) < 280
    assert all(split_of(i) == split_of(i) for i in ids)
    path = tmp_path / "c.jsonl.xz"
    many = [type(docs[0])(f"{d.doc_id}#{k}", d.domain, d.title, d.text) for d in docs for k in range(8)]
    build_corpus(path, {"legal": 10**9, "support": 10**9, "code": 10**9}, docs=many)
    train, heldout = load_corpus(path, "train"), load_corpus(path, "heldout")
    assert heldout and train
    assert not {d.doc_id for d in train} & {d.doc_id for d in heldout}
    assert len(train) + len(heldout) == len(many)
    # re-sampling with another seed keeps each document on its side
    build_corpus(path, {"legal": 10**9, "support": 10**9, "code": 10**9}, seed=9, docs=many)
    assert {d.doc_id for d in load_corpus(path, "heldout")} == {d.doc_id for d in heldout}


def test_strip_troff_keeps_option_tags_and_text():
    src = ".TH LS 1\n.SH NAME\nls \\- list\n.TP\n\\fB\\-a\\fR, \\fB\\-\\-all\\fR\ndo not ignore entries\n"
    out = strip_troff(src)
    assert "NAME" in out and "ls - list" in out and "-a, --all\ndo not ignore entries" in out


def test_prompt_maps_every_context_token_back_to_its_characters(tok):
    pieces = [
        ContextPiece("The fee is 42 dollars.\nPay it now.", "a.txt:1-2"),
        ContextPiece("Nothing here.", "b"),
    ]
    ri = build_reader_input(tok, "What is the fee?", pieces)
    for sid in (BOS, QUESTION, CONTEXT, DOC, SEP, ANSWER):
        assert tok.token_to_id(sid) in ri.input_ids.tolist()
    # query first: the question comes before any context token
    first_ctx = int((ri.piece_index >= 0).nonzero()[0][0])
    q_ids = tok.encode("What is the fee?", add_special_tokens=False).ids
    assert ri.input_ids[2 : 2 + len(q_ids)].tolist() == q_ids and first_ctx > 2 + len(q_ids)
    s, e = ri.token_span(0, 11, 13)
    p, cs, ce = ri.char_span(s, e)
    assert p == 0 and pieces[0].text[cs:ce].strip() == "42"
    # concatenating each piece's token spans gives back its text
    for i, piece in enumerate(pieces):
        sel = ri.piece_index == i
        assert (
            "".join(piece.text[a:b] for a, b in zip(ri.char_start[sel], ri.char_end[sel], strict=True))
            == piece.text
        )


def test_prompt_budget_drops_whole_pieces_and_rejects_bad_input(tok):
    pieces = [ContextPiece("word " * 50, "a"), ContextPiece("word " * 50, "b")]
    ri = build_reader_input(tok, "q?", pieces, max_tokens=80)
    assert ri.pieces_used == 1 and len(ri) <= 80
    with pytest.raises(ValueError, match="question is empty"):
        build_reader_input(tok, "  ", pieces)
    with pytest.raises(ValueError, match="over the budget"):
        build_reader_input(tok, "a long question " * 20, pieces, max_tokens=10)


def test_encoded_samples_point_at_gold_tokens(docs, tok):
    maker = QATaskMaker(docs)
    rng = random.Random(11)
    for _ in range(10):
        s = maker.sample(rng, 800)
        ri, spans = encode_sample(tok, s, 1024)
        if not spans:
            continue
        (ts, te), a = spans[0], s.answers[0]
        p, cs, ce = ri.char_span(ts, te)
        assert p == a.piece and cs <= a.char_start and ce >= a.char_end
        assert a.text in s.pieces[p].text[cs:ce]
