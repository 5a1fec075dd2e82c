"""Render reader benchmark JSON (bench/model/reader_eval.py, bench/model/reader_speed.py) as the markdown
tables of bench/results/reader.md.

    python bench/model/reader_report.py --eval eval.json --speed speed.json --card "NVIDIA H200" > tables.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def niah_tables(ev: dict) -> list[str]:
    out = []
    for name, res in ev["readers"].items():
        cells = {}
        for key, acc in res["niah"].items():
            task, L, layout = key.split("|")
            cells[(layout, task, int(L))] = acc
        lengths = sorted({k[2] for k in cells})
        for layout in ("query_first", "question_last"):
            tasks = [t for t in dict.fromkeys(k[1] for k in cells if k[0] == layout)]
            if not tasks:
                continue
            out.append(f"\n**{name}**, NIAH accuracy, {layout.replace('_', '-')} layout\n")
            out.append("| task | " + " | ".join(f"{L // 1024}k" for L in lengths) + " |")
            out.append("|---|" + "---|" * len(lengths))
            for t in tasks:
                row = [f"{cells[(layout, t, L)]:.2f}" if (layout, t, L) in cells else "-" for L in lengths]
                out.append(f"| {t} | " + " | ".join(row) + " |")
    return out


def qa_table(ev: dict) -> list[str]:
    out = ["\nHeld-out extractive QA (exact match / F1 / evidence@1)\n"]
    systems = {"retrieval-only (BM25 passage, best sentence)": ev["retrieval_only"]}
    systems.update({n: r["qa"] for n, r in ev["readers"].items()})
    keys = list(ev["retrieval_only"])
    out.append("| system | " + " | ".join(k.replace("|", " @ ") for k in keys) + " |")
    out.append("|---|" + "---|" * len(keys))
    for name, res in systems.items():
        cells = [f"{res[k]['em']:.2f} / {res[k]['f1']:.2f} / {res[k]['evidence_at_1']:.2f}" for k in keys]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    n = {k: ev["retrieval_only"][k]["n"] for k in keys}
    out.append(f"\nquestions per cell: {n}")
    return out


def speed_table(sp: dict) -> list[str]:
    out = [f"\nForward speed and memory, batch 1, bf16, inference mode ({sp['device']})\n"]
    out.append("| model | variant | tokens | ms | peak GiB above weights |")
    out.append("|---|---|---|---|---|")
    for r in sp["rows"]:
        out.append(f"| {r['model']} | {r['variant']} | {r['tokens']} | {r['ms']} | {r['peak_gib']} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval")
    ap.add_argument("--speed")
    a = ap.parse_args(argv)
    lines: list[str] = []
    if a.eval:
        ev = json.loads(Path(a.eval).read_text())
        lines += niah_tables(ev) + qa_table(ev)
    if a.speed:
        lines += speed_table(json.loads(Path(a.speed).read_text()))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
