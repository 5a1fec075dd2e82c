"""`rag eval` on unanswerable questions and the answer+citation measure."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

from gdn2_rag.evaluate import contains_answer, evaluate, load_eval_set
from gdn2_rag.types import Answer, Citation, Passage


def _p(path: str) -> Passage:
    return Passage(chunk_id=0, path=path, text="t", score=1.0, line_start=1, line_end=2, domain="legal")


def _answer(q: str, text: str, cite: str | None, abstained: bool = False, evidence: str = "") -> Answer:
    cites = [Citation(cite, 1, 2, "x", 0)] if cite else []
    score = None if abstained else 0.25
    return Answer(
        q,
        text,
        "retrieval-only",
        cites,
        [_p("/d/a.txt")],
        evidence=evidence,
        score=score,
        abstained=abstained,
    )


ANSWERS = {
    # a whole sentence holding the answer, first citation right: counts
    "a1": _answer("a1", "You must give notice within thirty days of the change.", "/d/a.txt"),
    # right text, wrong file first
    "a2": _answer("a2", "thirty days", "/d/b.txt"),
    # wrongly abstained on an answerable question
    "a3": _answer("a3", "", None, abstained=True),
    # unanswerable: one abstains, one answers anyway
    "u1": _answer("u1", "", None, abstained=True),
    "u2": _answer("u2", "something", "/d/a.txt"),
}
ROWS = [
    {"question": "a1", "answers": ["thirty days"], "source": "/d/a.txt", "domain": "legal"},
    {"question": "a2", "answers": ["thirty days"], "source": "/d/a.txt", "domain": "legal"},
    {"question": "a3", "answers": ["x"], "source": "/d/a.txt", "domain": "legal"},
    {"question": "u1", "answers": [], "source": None, "domain": "legal"},
    {"question": "u2", "answers": [], "source": None, "domain": "legal"},
]


def test_unanswerable_questions_score_abstention(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    report = evaluate(lambda q: ANSWERS[q], load_eval_set(f))
    # every row keeps the answer's confidence, so a reader's threshold can be calibrated from the report
    assert [r.score for r in report.rows] == [0.25, 0.25, None, None, 0.25]
    s = report.summary()["legal"]
    assert s["n"] == 3 and s["unanswerable"] == 2
    assert abs(s["answer_citation"] - 1 / 3) < 1e-9 and abs(s["contains"] - 2 / 3) < 1e-9
    # abstained on a3 (answerable) and u1 (unanswerable): precision 1/2; recall 1 of 2 unanswerable
    assert s["abstain_precision"] == 0.5 and s["abstain_recall"] == 0.5
    assert abs(s["abstained_answerable"] - 1 / 3) < 1e-9


def test_stdlib_sources_resolve_and_evidence_counts(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "q", "answers": ["x"], "source": "{stdlib}/json/decoder.py"}) + "\n")
    (item,) = load_eval_set(f)
    assert Path(item.source) == Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py"
    assert contains_answer("The default is 10 seconds.", ["10 seconds"])
    assert not contains_answer("", ["10 seconds"])
