"""Answer typing: what a question's form asks for, and how it moves the evidence choice."""

from __future__ import annotations

import pytest

from gdn2_rag.answer_type import expected_types, type_match


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("When did the 2.1 lesser license come out?", {"date"}),
        ("What year was this module first written?", {"date"}),
        ("How many times will ssh ask for my password?", {"number"}),
        ("wget finished with exit status 8; what does that tell me?", {"number"}),
        ("What's the default port for SMTP over SSL?", {"default", "number"}),
        ("What does df count in unless I change it?", {"default"}),
        ("Who wrote GNU sort?", {"person"}),
        ("Which exception does json raise on bad input?", {"exception"}),
        ("Where does passwd keep the encrypted passwords?", {"path"}),
        ("Which option makes ls show hidden files?", {"option"}),
        ("What does GPLv3 mean by object code?", set()),
        ("Can I sell copies of the program?", set()),
    ],
)
def test_expected_types_read_the_question_form(question, kinds):
    assert expected_types(question) == frozenset(kinds)


def test_type_match_counts_the_kinds_a_sentence_holds():
    number_default = frozenset({"number", "default"})
    assert type_match(number_default, "The default is 3 attempts.") == 1.0
    assert type_match(number_default, "SMTP_SSL_PORT = 465") == 1.0  # a code assignment is a default value
    assert type_match(number_default, "Specifies the number of password prompts.") == 0.0
    assert type_match(frozenset({"number", "date"}), "retries 5 times") == 0.5
    assert type_match(frozenset({"number"}), "with ninety days of written notice") == 1.0
    assert type_match(frozenset({"date"}), "Version 2.1, February 1999") == 1.0
    assert type_match(frozenset({"date"}), "Version 2.1 of the license") == 0.0
    assert type_match(frozenset({"person"}), "Written by Mike Haertel and Paul Eggert.") == 1.0
    assert type_match(frozenset({"exception"}), "raise ValueError('bad')") == 1.0
    assert type_match(frozenset({"path"}), "the password is stored in /etc/shadow instead") == 1.0
    assert type_match(frozenset({"option"}), "  -a, --all  do not ignore entries") == 1.0
    assert type_match(frozenset(), "anything at all, 42") == 0.0


def test_typed_evidence_picks_the_sentence_with_the_asked_for_value(tmp_path, fake_index):
    from gdn2_rag import RAG, RAGConfig

    question = "How many minutes is the reset link e-mail good for?"
    typed = RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False, evidence="lexical"))
    untyped = RAG(
        tmp_path,
        index=fake_index,
        config=RAGConfig(use_reader=False, evidence="lexical", answer_types=False),
    )
    # more of the question's words are in the sentence that sends the link; the number is in the next one
    assert "e-mail address" in untyped.ask(question, context_tokens=2000).text
    answer = typed.ask(question, context_tokens=2000)
    assert "expires after 45 minutes" in answer.text
    assert answer.citations and answer.citations[0].path.endswith("password.md")
