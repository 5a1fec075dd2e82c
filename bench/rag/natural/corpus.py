"""The corpus the natural-question sets are asked against: files every Debian + Python 3.11 machine has.

    python bench/rag/natural/corpus.py > /tmp/files.txt      # one path per line, deterministic

- legal: every file of /usr/share/common-licenses;
- support: the man pages of common tools, every 100th other page of man1, and man5/man8 pages, as
  distractors (the set's own pages are included whatever their name);
- code: the 100 smallest top-level modules of the standard library, plus every file a question names.

About 450 files: the size of the index the review asked its 75 questions against.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SETS = [ROOT / "bench" / "data" / "natural_dev.jsonl", ROOT / "bench" / "data" / "natural_final.jsonl"]
COMMON = frozenset(
    [
        "grep",
        "find",
        "tar",
        "sed",
        "gzip",
        "ls",
        "cp",
        "ssh",
        "curl",
        "git",
        "dpkg",
        "mv",
        "rm",
        "chmod",
        "chown",
        "ln",
        "mkdir",
        "df",
        "du",
        "ps",
        "kill",
        "top",
        "less",
        "more",
        "cat",
        "head",
        "tail",
        "sort",
        "uniq",
        "wc",
        "cut",
        "tr",
        "xargs",
        "awk",
        "diff",
        "patch",
        "make",
        "bash",
        "zip",
        "unzip",
        "wget",
        "man",
        "rsync",
        "apt",
        "apt-get",
        "crontab",
        "date",
        "env",
        "nice",
        "nohup",
        "sleep",
        "tee",
        "touch",
        "uname",
        "which",
        "chgrp",
        "stat",
        "install",
        "timeout",
    ]
)


def question_sources() -> set[Path]:
    """Every file named by a question of the natural sets (read for its path only)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = set()
    for path in SETS:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            src = json.loads(line).get("source") if line.strip() else None
            if src:
                out.add(stdlib / src[len("{stdlib}/") :] if src.startswith("{stdlib}/") else Path(src))
    return out


def corpus_files() -> list[Path]:
    files = set(Path("/usr/share/common-licenses").iterdir())
    man1 = sorted(Path("/usr/share/man/man1").glob("*.gz"))
    files |= {p for p in man1 if p.name.split(".")[0] in COMMON}
    files |= set(man1[::100])
    for section in ("man5", "man8"):
        files |= set(sorted(Path("/usr/share/man", section).glob("*.gz"))[::20])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files |= set(sorted(stdlib.glob("*.py"), key=lambda p: (p.stat().st_size, p.name))[:100])
    files |= question_sources()
    return sorted(p for p in files if p.is_file())


if __name__ == "__main__":
    files = corpus_files()
    print("\n".join(map(str, files)))
    print(f"{len(files)} files", file=sys.stderr)
