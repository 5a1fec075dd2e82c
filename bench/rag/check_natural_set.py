#!/usr/bin/env python3
"""Validate the hand-written natural-question evaluation sets.

Checks bench/data/natural_dev.jsonl, bench/data/natural_final.jsonl and,
when present, bench/data/natural_holdout.jsonl and
bench/data/natural_blind{2,3,4}.jsonl (stdlib only):

  * every line is a JSON object with the fields id, question, answers,
    source, domain, evidence, style, of the right types and values;
  * ids are unique, questions are unique (within and across all the files);
  * per-domain counts: dev >= 50 answerable + >= 10 unanswerable per domain,
    final >= 20 answerable + >= 5 unanswerable per domain, holdout >= 20
    answerable + >= 4 unanswerable per domain, blind2/3/4 >= 20 answerable +
    >= 10 unanswerable per domain; dev draws on >= 10, holdout and blind2/3/4 on >= 8
    distinct source files per domain;
  * ids look like <domain>-NNN / <domain>-uNNN (holdout: hold-<domain>-NNN /
    hold-<domain>-uNNN; blind2/3: blind2-<domain>-NNN / blind2-<domain>-uNNN, likewise blind3-, blind4-);
  * every answer string occurs verbatim (case-insensitive, whitespace
    normalised) in the source file's text.  Man pages (*.gz under a man
    directory) are compared against the rendered text
    `MANWIDTH=200 man -l FILE | col -b`, and there every answer must also sit
    on one rendered line and contain no roff escapes.  "{stdlib}/..." is
    resolved with sysconfig.get_paths()["stdlib"];
  * the evidence string occurs in the source text and contains an answer;
  * unanswerable items have answers == [], source == null, empty evidence;
  * no question shares more than 60% of its content words with its evidence
    line (keeps the wording natural rather than copied);
  * bench/data/natural_docs.txt (if present) lists exactly the sorted distinct
    sources of dev and final; the holdout's and blind sets' sources must be a
    subset of it (they add no new documents).

The holdout and blind2/3/4 files (each written blind, from the source documents
only) are optional: when one is absent its check is skipped with a note; when
present it obeys the same rules.

Usage: python3 bench/rag/check_natural_set.py [DEV FINAL [HOLDOUT [BLIND2 [BLIND3 [BLIND4]]]]]  (JSONL paths)
Exit status 0 when everything passes, 1 otherwise.
"""

import gzip
import json
import os
import re
import subprocess
import sys
import sysconfig
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(HERE, "data")
DOMAINS = ("legal", "support", "code")
STYLES = {
    "paraphrase",
    "default",
    "exit-code",
    "limit",
    "date",
    "who",
    "where",
    "which",
    "condition",
    "definition",
    "unanswerable",
}
FIELDS = {
    "id": str,
    "question": str,
    "answers": list,
    "source": (str, type(None)),
    "domain": str,
    "evidence": str,
    "style": str,
}
MIN_COUNTS = {  # file kind -> (answerable per domain, unanswerable per domain)
    "dev": (50, 10),
    "final": (20, 5),
    "holdout": (20, 4),
    "blind2": (20, 10),
    "blind3": (20, 10),
    "blind4": (20, 10),
}
# file kind -> distinct sources per domain
MIN_DOCS_PER_DOMAIN = {"dev": 10, "holdout": 8, "blind2": 8, "blind3": 8, "blind4": 8}
ID_PREFIX = {"dev": "", "final": "", "holdout": "hold-", **{f"blind{i}": f"blind{i}-" for i in (2, 3, 4)}}
# file kinds that may be absent; their sources must be in natural_docs.txt
OPTIONAL = ("holdout", "blind2", "blind3", "blind4")
MAX_OVERLAP = 0.60
STDLIB = sysconfig.get_paths()["stdlib"]

STOP = set(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "by",
        "at",
        "from",
        "as",
        "is",
        "are",
        "be",
        "was",
        "were",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "if",
        "then",
        "than",
        "so",
        "not",
        "no",
        "yes",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "they",
        "them",
        "their",
        "he",
        "she",
        "his",
        "her",
        "there",
        "here",
        "about",
        "into",
        "over",
        "under",
        "up",
        "down",
        "out",
        "any",
        "all",
        "some",
        "each",
        "much",
        "many",
        "more",
        "most",
        "other",
        "such",
        "only",
        "own",
        "same",
        "too",
        "very",
        "just",
        "also",
        "get",
        "got",
        "have",
        "has",
        "had",
        "use",
        "using",
        "used",
        "want",
        "wanna",
        "need",
        "say",
        "says",
        "said",
        "tell",
        "make",
        "makes",
        "like",
        "way",
        "thing",
        "things",
        "one",
    ]
)

ROFF_ESCAPE = re.compile(r"\\[fF\-(\[*&e\"]")


def norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def content_words(s):
    out = set()
    for t in re.findall(r"[a-z0-9]+", s.lower()):
        if t in STOP or (len(t) < 3 and not t.isdigit()):
            continue
        if len(t) > 3 and t.endswith("s"):
            t = t[:-1]
        out.add(t)
    return out


def overlap(question, evidence):
    q = content_words(question)
    if not q:
        return 0.0
    return len(q & content_words(evidence)) / len(q)


def is_man_page(path):
    return path.endswith(".gz") and "/man/" in path


_text_cache = {}


def source_text(source):
    """Return the text an answer must be found in, or raise OSError."""
    if source in _text_cache:
        return _text_cache[source]
    if source.startswith("{stdlib}/"):
        path = os.path.join(STDLIB, source[len("{stdlib}/") :])
        with open(path, encoding="utf-8") as f:
            text = f.read()
    elif is_man_page(source):
        if not os.path.exists(source):
            raise OSError(f"no such man page: {source}")
        env = dict(os.environ, MANWIDTH="200")
        man = subprocess.Popen(
            ["man", "-l", source], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        col = subprocess.run(["col", "-b"], stdin=man.stdout, capture_output=True, env=env, check=False)
        man.stdout.close()
        man.wait()
        text = col.stdout.decode("utf-8", errors="replace")
        if not text.strip():
            raise OSError(f"man rendered nothing for {source}")
    elif source.endswith(".gz"):
        with gzip.open(source, "rt", encoding="utf-8", errors="replace") as f:
            text = f.read()
    else:
        with open(source, encoding="utf-8", errors="replace") as f:
            text = f.read()
    _text_cache[source] = text
    return text


def load(path, errors):
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                errors.append(f"{path}:{n}: blank line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{path}:{n}: bad JSON: {e}")
                continue
            if not isinstance(obj, dict):
                errors.append(f"{path}:{n}: not an object")
                continue
            items.append((n, obj))
    return items


def check_item(path, n, o, errors, offenders, id_prefix=""):
    where = f"{os.path.basename(path)}:{n} ({o.get('id')})"
    missing = set(FIELDS) - set(o)
    extra = set(o) - set(FIELDS)
    if missing:
        errors.append(f"{where}: missing fields {sorted(missing)}")
        return False
    if extra:
        errors.append(f"{where}: unexpected fields {sorted(extra)}")
    for k, t in FIELDS.items():
        if not isinstance(o[k], t):
            errors.append(f"{where}: field {k} has type {type(o[k]).__name__}")
            return False
    if o["domain"] not in DOMAINS:
        errors.append(f"{where}: bad domain {o['domain']!r}")
    if o["style"] not in STYLES:
        errors.append(f"{where}: bad style {o['style']!r}")
    if not re.fullmatch(rf"{re.escape(id_prefix + o['domain'])}-u?\d{{3}}", o["id"]):
        errors.append(f"{where}: id does not look like {id_prefix}<domain>-NNN / {id_prefix}<domain>-uNNN")
    if not o["question"].strip().endswith("?"):
        errors.append(f"{where}: question does not end with '?'")
    if o["style"] == "unanswerable":
        if o["answers"] or o["source"] is not None or o["evidence"]:
            errors.append(f"{where}: unanswerable item must have answers=[], source=null, evidence=''")
        if not o["id"].startswith(id_prefix + o["domain"] + "-u"):
            errors.append(f"{where}: unanswerable id should be {id_prefix}<domain>-uNNN")
        return True
    if not o["answers"] or not all(isinstance(a, str) and a.strip() for a in o["answers"]):
        errors.append(f"{where}: answers must be a non-empty list of non-empty strings")
        return False
    if len(o["answers"]) > 4:
        errors.append(f"{where}: too many alternative answers ({len(o['answers'])})")
    src = o["source"]
    if src is None:
        errors.append(f"{where}: answerable item without source")
        return False
    if o["domain"] == "code" and not src.startswith("{stdlib}/"):
        errors.append(f"{where}: code source must start with {{stdlib}}/")
    if o["domain"] == "legal" and not src.startswith("/usr/share/common-licenses/"):
        errors.append(f"{where}: legal source must be under /usr/share/common-licenses/")
    if o["domain"] == "support" and not (is_man_page(src) or src.startswith("/usr/share/doc/")):
        errors.append(f"{where}: support source must be a man page or /usr/share/doc README")
    try:
        text = source_text(src)
    except OSError as e:
        errors.append(f"{where}: cannot read source: {e}")
        return False
    ntext = norm(text)
    man_lines = [norm(l) for l in text.splitlines()] if is_man_page(src) else None
    for a in o["answers"]:
        na = norm(a)
        if na not in ntext:
            errors.append(f"{where}: answer not found verbatim in {src}: {a!r}")
            continue
        if man_lines is not None:
            if not any(na in l for l in man_lines):
                errors.append(f"{where}: answer spans several rendered man lines: {a!r}")
            if ROFF_ESCAPE.search(a):
                errors.append(f"{where}: answer contains a roff escape: {a!r}")
    nev = norm(o["evidence"])
    if not nev:
        errors.append(f"{where}: empty evidence")
    else:
        if nev not in ntext:
            errors.append(f"{where}: evidence not found in {src}")
        if not any(norm(a) in nev for a in o["answers"]):
            errors.append(f"{where}: evidence contains none of the answers")
        ov = overlap(o["question"], o["evidence"])
        if ov > MAX_OVERLAP:
            offenders.append(
                f"{where}: {ov:.0%} content-word overlap: "
                f"Q={o['question']!r} EVIDENCE={o['evidence'].strip()!r}"
            )
    return True


def main(argv):
    dev = argv[1] if len(argv) > 1 else os.path.join(DATA, "natural_dev.jsonl")
    final = argv[2] if len(argv) > 2 else os.path.join(DATA, "natural_final.jsonl")
    holdout = argv[3] if len(argv) > 3 else os.path.join(DATA, "natural_holdout.jsonl")
    blind2 = argv[4] if len(argv) > 4 else os.path.join(DATA, "natural_blind2.jsonl")
    blind3 = argv[5] if len(argv) > 5 else os.path.join(DATA, "natural_blind3.jsonl")
    blind4 = argv[6] if len(argv) > 6 else os.path.join(DATA, "natural_blind4.jsonl")
    docs_file = os.path.join(os.path.dirname(dev), "natural_docs.txt")
    errors, offenders = [], []
    all_questions = {}
    all_ids = {}
    all_sources = set()
    subset_sources = {kind: set() for kind in OPTIONAL}  # optional kind -> its answerable sources
    kinds = (
        ("dev", dev), ("final", final), ("holdout", holdout), ("blind2", blind2), ("blind3", blind3),
        ("blind4", blind4),
    )  # fmt: skip
    for kind, path in kinds:
        if kind in OPTIONAL and not os.path.exists(path):
            print(f"note: {path} not found ({kind} check skipped)")
            continue
        if not os.path.exists(path):
            errors.append(f"missing file {path}")
            continue
        items = load(path, errors)
        counts = Counter()
        styles = Counter()
        docs = defaultdict(set)
        for n, o in items:
            if not check_item(path, n, o, errors, offenders, ID_PREFIX[kind]):
                continue
            key = norm(o["question"])
            if key in all_questions:
                errors.append(
                    f"{os.path.basename(path)}:{n}: duplicate question "
                    f"(also {all_questions[key]}): {o['question']!r}"
                )
            all_questions[key] = f"{os.path.basename(path)}:{n}"
            if o["id"] in all_ids.get(kind, set()):
                errors.append(f"{os.path.basename(path)}:{n}: duplicate id {o['id']}")
            all_ids.setdefault(kind, set()).add(o["id"])
            unans = o["style"] == "unanswerable"
            counts[(o["domain"], unans)] += 1
            styles[o["style"]] += 1
            if not unans:
                docs[o["domain"]].add(o["source"])
                (subset_sources[kind] if kind in OPTIONAL else all_sources).add(o["source"])
        need_ans, need_un = MIN_COUNTS[kind]
        for d in DOMAINS:
            if counts[(d, False)] < need_ans:
                errors.append(
                    f"{kind}: domain {d} has {counts[(d, False)]} answerable questions, need >= {need_ans}"
                )
            if counts[(d, True)] < need_un:
                errors.append(
                    f"{kind}: domain {d} has {counts[(d, True)]} unanswerable questions, need >= {need_un}"
                )
            need_docs = MIN_DOCS_PER_DOMAIN.get(kind, 0)
            if len(docs[d]) < need_docs:
                errors.append(f"{kind}: domain {d} uses {len(docs[d])} distinct files, need >= {need_docs}")
        print(f"{kind}: {len(items)} questions in {path}")
        for d in DOMAINS:
            print(
                f"  {d:8s} answerable={counts[(d, False)]:3d} unanswerable={counts[(d, True)]:3d} "
                f"distinct_docs={len(docs[d])}"
            )
        print("  styles: " + ", ".join(f"{s}={c}" for s, c in sorted(styles.items())))
    if os.path.exists(docs_file):
        with open(docs_file, encoding="utf-8") as f:
            listed = [l.rstrip("\n") for l in f if l.strip()]
        if listed != sorted(all_sources):
            errors.append(
                f"{docs_file}: does not list exactly the sorted distinct sources "
                f"(listed {len(listed)}, expected {len(all_sources)})"
            )
        else:
            print(f"natural_docs.txt: {len(listed)} distinct source files, matches both sets")
        for kind in OPTIONAL:
            unlisted = sorted(subset_sources[kind] - set(listed))
            for src in unlisted:
                errors.append(f"{kind}: source {src} is not listed in {docs_file}")
            n_sources = len(subset_sources[kind])
            if n_sources and not unlisted:
                print(f"{kind}: its {n_sources} distinct sources are all listed in natural_docs.txt")
    else:
        print(f"note: {docs_file} not found (skipped)")
    for line in offenders:
        print("OVERLAP", line)
    for line in errors:
        print("ERROR", line)
    ok = not errors and not offenders
    print("PASS" if ok else f"FAIL: {len(errors)} errors, {len(offenders)} overlap offenders")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
