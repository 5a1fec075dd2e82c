"""Training questions written like a user's, over training documents, and their check.

The generated questions of `qa_v3` are worded like the text they come from; users' are not (issue 18).
`written_questions.jsonl` beside this module holds questions written in plain words by people-like writers
(language-model helpers reading one training document at a time, told to ask as a user who has not read it
would). Each line:

    {"id": "wq-legal-001", "source": "<doc_id of a training document>", "domain": "legal",
     "question": "...", "answer": "<verbatim span of the document>", "evidence": "<verbatim text holding it>"}

Every source is a document of the training split (never one of the hand-written evaluation sets: those
documents are excluded from the prepared training file, and `check` refuses a question over any of them).
`WrittenQA.locate` turns a question into the char offsets that `V3SampleMaker.sample_written` needs.

    python -m gdn2_model.data.written merge OUT PART...      # writers' files -> one file
    python -m gdn2_model.data.written check FILE --docs DIR   # DIR: <name>.txt texts + manifest.json
    python -m gdn2_model.data.written check FILE --data runs/v3/data.jsonl.xz
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gdn2_model.data.chunk_bm25 import STOP_WORDS

DEFAULT_FILE = Path(__file__).with_name("written_questions.jsonl")
DOMAINS = ("legal", "support", "code")
MAX_ANSWER_CHARS = 160
MAX_EVIDENCE_CHARS = 700
MAX_OVERLAP = 0.6  # share of the question's content words that its evidence may hold (the eval sets' rule)


def content_words(s: str) -> set[str]:
    out = set()
    for t in re.findall(r"[a-z0-9]+", s.lower()):
        if t in STOP_WORDS or (len(t) < 3 and not t.isdigit()):
            continue
        out.add(t[:-1] if len(t) > 3 and t.endswith("s") else t)
    return out


def overlap(question: str, evidence: str) -> float:
    q = content_words(question)
    return len(q & content_words(evidence)) / len(q) if q else 0.0


@dataclass(frozen=True)
class WrittenQA:
    id: str
    source: str
    domain: str
    question: str
    answer: str
    evidence: str

    def locate(self, text: str) -> tuple[int, int, int, int] | None:
        """(answer start, end, evidence start, end) in `text`: the answer's first occurrence inside the
        evidence's first occurrence; None when either is missing."""
        es = text.find(self.evidence)
        if es < 0:
            return None
        a = self.evidence.find(self.answer)
        if a < 0:
            return None
        return es + a, es + a + len(self.answer), es, es + len(self.evidence)


def load(path: str | Path = DEFAULT_FILE) -> list[WrittenQA]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(WrittenQA(**{k: d[k] for k in WrittenQA.__dataclass_fields__}))
    return out


def problems(
    items: Iterable[dict], texts: dict[str, str] | None, excluded: set[str] = frozenset()
) -> list[str]:
    """Every rule a line breaks, one message each (empty: the file is good). `texts` (source -> text) None
    skips the rules that need the documents (known source, evidence verbatim in it)."""
    errs: list[str] = []
    seen_q: set[str] = set()
    seen_id: set[str] = set()
    for n, d in enumerate(items, 1):
        where = f"line {n} ({d.get('id', '?')})"
        missing = [k for k in WrittenQA.__dataclass_fields__ if not isinstance(d.get(k), str) or not d[k]]
        if missing:
            errs.append(f"{where}: missing or empty {', '.join(missing)}")
            continue
        q, a, ev, src = d["question"], d["answer"], d["evidence"], d["source"]
        if d["id"] in seen_id:
            errs.append(f"{where}: duplicate id")
        seen_id.add(d["id"])
        key = " ".join(q.lower().split())
        if key in seen_q:
            errs.append(f"{where}: duplicate question")
        seen_q.add(key)
        if d["domain"] not in DOMAINS:
            errs.append(f"{where}: domain {d['domain']!r} not in {DOMAINS}")
        if src in excluded:
            errs.append(f"{where}: {src} is a document of an evaluation set")
        if texts is not None and src not in texts:
            errs.append(f"{where}: unknown source {src}")
            continue
        if len(q.split()) < 4:
            errs.append(f"{where}: question under 4 words")
        if a != a.strip() or len(a) > MAX_ANSWER_CHARS:
            errs.append(f"{where}: answer must be stripped and <= {MAX_ANSWER_CHARS} chars")
        if len(ev) > MAX_EVIDENCE_CHARS:
            errs.append(f"{where}: evidence over {MAX_EVIDENCE_CHARS} chars")
        if a not in ev:
            errs.append(f"{where}: the answer is not inside the evidence (exact, case-sensitive)")
        elif texts is not None and ev not in texts[src]:
            errs.append(f"{where}: the evidence is not verbatim in the document (exact, case-sensitive)")
        ov = overlap(q, ev)
        if ov > MAX_OVERLAP:
            errs.append(f"{where}: {ov:.0%} of the question's content words are in its evidence (max 60 %)")
    return errs


def _texts_from_docs_dir(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {m["source"]: (folder / m["file"]).read_text(encoding="utf-8") for m in manifest}


def _texts_from_prepared(path: Path) -> tuple[dict[str, str], set[str]]:
    texts, excluded = {}, set()
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if "doc" in d:
                texts[d["doc"]["doc_id"]] = d["doc"]["text"]
            elif "meta" in d:
                excluded = set(d["meta"].get("excluded_list", []))
    return texts, excluded


def merge(parts: Iterable[Path]) -> list[dict]:
    """The writers' files as one list: a question asked twice (same words) kept once, a line whose id
    names another domain than its own dropped (a writer's tool that wrote into another's file), ids made
    `wq-<domain>-NNNN` in order."""
    out: list[dict] = []
    seen: set[str] = set()
    per: Counter = Counter()
    for part in parts:
        for line in part.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            key = " ".join(d["question"].lower().split())
            if key in seen or f"-{d['domain']}-" not in d["id"]:
                continue
            seen.add(key)
            per[d["domain"]] += 1
            out.append({**d, "id": f"wq-{d['domain']}-{per[d['domain']]:04d}"})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gdn2_model.data.written")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="join writers' files into one (duplicates and misfiled lines dropped)")
    m.add_argument("out")
    m.add_argument("parts", nargs="+")
    c = sub.add_parser("check", help="validate a written-questions file")
    c.add_argument("file", nargs="?", default=str(DEFAULT_FILE))
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--docs", help="folder of <name>.txt texts with manifest.json (source, file)")
    src.add_argument("--data", help="prepared training file (runs/v3/data.jsonl.xz)")
    a = p.parse_args(argv)
    if a.cmd == "merge":
        merged = merge(Path(x) for x in a.parts)
        Path(a.out).write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in merged), "utf-8")
        print(f"{len(merged)} questions -> {a.out}")
        return 0
    items = [json.loads(x) for x in Path(a.file).read_text(encoding="utf-8").splitlines() if x.strip()]
    if a.docs:
        texts, excluded = _texts_from_docs_dir(Path(a.docs)), set()
    else:
        texts, excluded = _texts_from_prepared(Path(a.data))
    errs = problems(items, texts, excluded)
    for e in errs:
        print(e)
    per = Counter(d.get("domain") for d in items)
    docs = len({d.get("source") for d in items})
    print(f"{len(items)} questions over {docs} documents ({dict(per)}); {len(errs)} problems")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
