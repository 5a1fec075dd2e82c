"""`rag eval`: metrics on known outcomes, input validation, and the CLI table/JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gdn2_rag.evaluate import EvalSetError, evaluate, exact_match, f1_score, load_eval_set
from gdn2_rag.types import Answer, Citation, Passage


def _p(path, text, domain):
    return Passage(chunk_id=0, path=path, text=text, score=1.0, line_start=1, line_end=2, domain=domain)


ANSWERS = {
    # right passage retrieved, right answer, right citation
    "q1": Answer(
        "q1",
        "the Apache License",
        "reader",
        [Citation("/d/a.txt", 1, 2, "x", 0)],
        [_p("/d/a.txt", "under the Apache License", "legal")],
    ),
    # retrieved but wrong answer with partial overlap, cites the wrong file
    "q2": Answer(
        "q2",
        "version 2 of GPL",
        "reader",
        [Citation("/d/b.txt", 1, 2, "x", 0)],
        [_p("/d/b.txt", "x", "legal"), _p("/d/c.txt", "GPL version 3", "legal")],
    ),
    # source not retrieved at all; support domain; no source given: hit by answer text
    "q3": Answer("q3", "list all", "retrieval-only", [], [_p("/m/ls", "-a list all entries", "support")]),
}


def _write(tmp_path, rows):
    f = tmp_path / "qs.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f


ROWS = [
    {"question": "q1", "answers": ["Apache License"], "source": "/d/a.txt"},
    {"question": "q2", "answers": ["GPL version 3"], "source": "/d/c.txt"},
    {"question": "q3", "answers": ["list all entries"]},
]


def test_metrics_on_known_outcomes(tmp_path):
    items = load_eval_set(_write(tmp_path, ROWS))
    rep = evaluate(lambda q: ANSWERS[q], items, k=10)
    s = rep.summary()
    assert s["legal"]["n"] == 2 and s["support"]["n"] == 1
    assert s["legal"]["hit_at_k"] == 1.0 and s["legal"]["exact_match"] == 0.5
    assert s["legal"]["citation_accuracy"] == 0.5
    # q2: pred {version, 2, of, gpl} vs gold {gpl, version, 3}: 2 common -> P 1/2, R 2/3 -> F1 4/7
    assert s["legal"]["f1"] == pytest.approx((1.0 + 4 / 7) / 2)
    assert s["support"]["citation_accuracy"] is None and s["support"]["hit_at_k"] == 1.0
    assert s["support"]["f1"] == pytest.approx(0.8)
    assert s["overall"]["exact_match"] == pytest.approx(1 / 3)
    assert s["overall"]["reader_answers"] == 2
    # hit@1: q2's source is only second
    assert evaluate(lambda q: ANSWERS[q], items, k=1).summary()["legal"]["hit_at_k"] == 0.5


def test_normalisation():
    assert exact_match("The  Apache License.", ["apache license"]) == 1.0
    assert f1_score("", ["x"]) == 0.0 and f1_score("", [""]) == 1.0


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ("{bad", "not JSON"),
        ('{"question": ""}', "non-empty string"),
        ('{"question": "q", "answers": "a"}', "answers"),
        ('{"question": "q", "answers": ["a"], "source": 3}', "source"),
    ],
)
def test_bad_lines_name_the_line(tmp_path, line, msg):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "ok", "answers": ["a"]}\n' + line + "\n")
    with pytest.raises(EvalSetError, match=f"bad.jsonl:2: .*{msg}"):
        load_eval_set(f)


def test_cli_eval_prints_table_and_json(tmp_path, monkeypatch):
    import gdn2_rag
    from gdn2_cli import app

    seen = []

    class FakeRAG:
        def __init__(self, config):
            self.config = config

        def ask(self, q, context_tokens=None):
            seen.append((self.config.use_reader, context_tokens))
            return ANSWERS[q]

    monkeypatch.setattr(gdn2_rag.RAG, "open", classmethod(lambda cls, index, config=None: FakeRAG(config)))
    f = _write(tmp_path, ROWS)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(f), "--index", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "overall" in res.output and "0.333" in res.output
    res = runner.invoke(app, ["eval", str(f), "--json", "--out", str(tmp_path / "r.json")])
    data = json.loads(res.output)
    assert data["summary"]["overall"]["n"] == 3
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == data["summary"]
    res = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "no such question file" in res.output
    # the reader options reach RAG (retrieval-only, budget) the way `rag ask` passes them
    seen.clear()
    res = runner.invoke(app, ["eval", str(f), "--index", str(tmp_path), "--no-reader", "-c", "500"])
    assert res.exit_code == 0 and seen == [(False, 500)] * 3
    res = runner.invoke(app, ["eval", str(f), "--no-reader", "--model", str(tmp_path)])
    assert res.exit_code == 2 and "contradicts" in res.output
