"""Abstention's names signal (gdn2_rag.abstain): a question naming what no indexed chunk mentions."""

from __future__ import annotations

from collections import Counter

import pytest

from gdn2_rag import RAG, RAGConfig
from gdn2_rag.abstain import abstention, is_english, unknown_names, word_forms
from gdn2_rag.types import Passage

WORDS = frozenset(
    [
        "how",
        "many",
        "does",
        "keep",
        "default",
        "by",
        "snapshots",
        "forget",
        "govern",
        "bundle",
        "the",
        "license",
        "what",
        "port",
        "server",
        "quick",
        "stop",
        "law",
        "which",
        "state",
        "allow",
        "use",
        "and",
        "nut",
        "shell",
        "stream",
        "reader",
        "dedicated",
        "licensed",
        "source",
        "business",
        "must",
        "notice",
        "give",
        "under",
        "much",
        "buffer",
        "a",
    ]
)


class TermIndex:
    def __init__(self, indexed: dict[str, int], words=WORDS, phrases=()) -> None:
        self.df = Counter(indexed)
        self.words = words
        self.phrases = set(phrases)

    def doc_freqs(self, text: str) -> dict[str, int]:
        terms = [t.strip("?.,'").lower() for t in text.split()]
        return {t: self.df[t] for t in dict.fromkeys(terms) if t}

    def dictionary_words(self):
        return self.words

    def mentions(self, phrase: str) -> bool:
        return phrase.lower() in self.phrases


def test_word_forms_find_inflected_words():
    assert "govern" in word_forms("governs")
    assert "bundle" in word_forms("bundling")
    assert "stop" in word_forms("stopped")
    assert "quick" in word_forms("quickest")
    assert "licensed" in word_forms("relicensed")
    assert word_forms("is") == {"is"}  # too short to strip
    # derivations: adverbs, superlatives, -able, -ization / -isation, -ified, -y adjectives, -izer
    assert "lazy" in word_forms("lazily") and "handy" in word_forms("handiest")
    assert "change" in word_forms("unchangeable") and "memo" in word_forms("memoization")
    assert "final" in word_forms("finalisation") and "string" in word_forms("stringified")
    assert "false" in word_forms("falsy") and "factor" in word_forms("factorizer")
    assert "snap" not in word_forms("snappy")  # "-y" alone is not stripped: many names end in it


def test_english_words_in_other_forms_and_compounds():
    assert is_english("dedicating", WORDS)  # via "dedicated"
    assert is_english("relicensed", WORDS)
    assert is_english("nutshell", WORDS)
    assert not is_english("nutshell", WORDS, compounds=False)
    assert not is_english("restic", WORDS)


def test_camel_case_compounds_are_names():
    index = TermIndex({"stream": 5, "reader": 3})
    assert unknown_names("What buffer does a streamreader keep?", index) == []  # a compound of two words
    assert unknown_names("What buffer does a StreamReader keep?", index) == ["streamreader"]


def test_a_capitalised_phrase_no_chunk_holds_is_a_name():
    index = TermIndex({"business": 4, "source": 90, "license": 300, "notice": 20}, phrases={"source license"})
    question = "How much notice must I give under the Business Source License?"
    assert unknown_names(question, index) == ["Business Source License"]
    index.phrases.add("business source license")
    assert unknown_names(question, index) == []


def test_a_name_no_chunk_holds_is_unknown_but_a_paraphrase_word_is_not():
    index = TermIndex({"snapshots": 3, "keep": 9, "default": 40})
    assert unknown_names("How many snapshots does restic forget keep by default?", index) == ["restic"]
    # "governs" is an English word (its stem is in the word list) that the documents happen not to use
    assert unknown_names("Which state law governs the license?", index) == []


def test_identifiers_and_versioned_names():
    index = TermIndex({"gpl": 12, "csv": 4})
    # a versioned name whose stem is indexed is known; an identifier no chunk holds is not
    assert unknown_names("Does gplv2 allow it?", index) == []
    assert unknown_names("What default does read_csv use, and boto3?", index) == ["read_csv", "boto3"]
    # numbers, decades and short terms are values and abbreviations, not names
    assert unknown_names("Which port, 8080 or lr?", index) == []
    assert unknown_names("Which port, 80s or 1990s?", index) == []


def test_no_word_list_turns_the_signal_off():
    assert unknown_names("How many snapshots does restic keep?", TermIndex({}, words=None)) == []


def _passage(cos: float) -> Passage:
    return Passage(chunk_id=0, path="a.md", title="a", domain="support", text="x", score=1.0, line_start=1,
                   line_end=1, dense_score=cos)  # fmt: skip


def test_abstention_names_first_then_the_cosine():
    index = TermIndex({"snapshots": 3, "keep": 9})
    why = abstention("How many snapshots does restic keep?", [_passage(0.9)], 0.5, index)
    assert "never mention 'restic'" in why
    assert abstention("How many snapshots does it keep?", [_passage(0.9)], 0.5, index) == ""
    assert "best similarity 0.30" in abstention(
        "How many snapshots does it keep?", [_passage(0.3)], 0.5, index
    )


@pytest.mark.parametrize("words", [None, frozenset()])
def test_pipeline_abstains_on_a_name_only_with_a_word_list(tmp_path, fake_index, words):
    fake_index.words = words
    cfg = RAGConfig(use_reader=False, abstain=True, abstain_below=0.0)
    answer = RAG(tmp_path, index=fake_index, config=cfg).ask("How do I reset my zorblaxian password?")
    assert not answer.abstained  # without a word list a term no chunk holds proves nothing
    fake_index.words = frozenset({"how", "do", "reset", "my", "password"})
    answer = RAG(tmp_path, index=fake_index, config=cfg).ask("How do I reset my zorblaxian password?")
    assert answer.abstained and answer.text == "" and not answer.citations
    assert "never mention 'zorblaxian'" in answer.model["reason"]
