"""Reader v3 training: export the MiniLM base, prepare data, train (resumable), evaluate, export.

    python bench/model/reader_v3_train.py export-minilm runs/v3/minilm         # fp16 shards <= 15 MB
    python bench/model/reader_v3_train.py prepare --out runs/v3/data.jsonl.xz  # corpus subset + held-out set
    python bench/model/reader_v3_train.py train --data runs/v3/data.jsonl.xz --base runs/v3/minilm \\
        --state runs/v3/train/state.pt --log runs/v3/train/log.jsonl --device cuda --max-minutes 8
    # with the questions written like a user's (every 8th document held out, scored as eval_written)
    python bench/model/reader_v3_train.py train ... \
        --written gdn2_model/data/written_questions.jsonl --p-written 0.3
    # fine-tune an exported checkpoint (as on the CPU on 2026-12-04: bench/results/reader.md)
    python bench/model/reader_v3_train.py train ... --init runs/v3/ckpt --written ... --p-written 0.7 \
        --steps 300
    python bench/model/reader_v3_train.py export --state runs/v3/train/state.pt --out runs/v3/ckpt
    python bench/model/reader_v3_train.py eval --ckpt runs/v3/ckpt --data runs/v3/data.jsonl.xz

On the GPU machine a call carries at most 64 MiB in all (tracked files included), and the tracked tree is
~71 MB with both shipped checkpoints: for GPU calls, move `gdn2_model/checkpoints/default` (reader v2,
43.7 MB) out of the working tree and back afterwards (it is committed). Then, while the machine stays
warm (it is released after 30 s idle; carried ignored files stay between calls):
    from scratch (needs MiniLM's layers 4-5 too): call 1 carries runs/v3/minilm (45 MB) with v3's checkpoint
          also moved out; call 2 carries runs/v3/data.jsonl.xz and .natural/ctx_dev_*.jsonl.xz and trains:
          bench/model/reader_v3_round.sh NAME 7.4 2400 --written gdn2_model/data/written_questions.jsonl
    fine-tune of an exported v3 (which holds layers 4-5): call 1 carries runs/v3/minilm_base4 (38 MB,
          `export-minilm --omit-from-layer 4`) and the dev contexts, call 2 runs/v3/data.jsonl.xz with
          `ln -sfn minilm_base4 runs/v3/minilm; bench/model/reader_v3_round.sh NAME MIN STEPS --init ...`
Measured on one H200 (2026-12-05): 2400 steps of ~27k context tokens in 6.3 min (172k tokens/s) with 30 %
written questions; fine-tunes run at 76-159k tokens/s (key-value samples are slower to make).

`train` resumes from `--state` when it exists, saves it every `--save-every` steps and when `--max-minutes`
is up, so it runs in short calls. Everything training needs is in the prepared file and the MiniLM folder
(the GPU machine has none of our corpus). `runs/` is git-ignored.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import os
import random
import re
import string
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gdn2_model.data.corpus import Document, iter_documents, split_of  # noqa: E402
from gdn2_model.data.qa_v3 import V3Sample, V3SampleMaker, excluded_documents, is_excluded  # noqa: E402
from gdn2_model.data.written import WrittenQA  # noqa: E402
from gdn2_model.data.written import load as load_written  # noqa: E402
from gdn2_model.reader import best_spans  # noqa: E402
from gdn2_model.reader_v3 import (  # noqa: E402
    ReaderV3Config,
    ReaderV3Net,
    V3Input,
    base_model_path,
    build_net,
    build_v3_input,
    collate,
    load_net,
    save_checkpoint,
    saved_state,
    v3_losses,
)


# ------------------------------------------------------------------------------------------- export-minilm
def export_minilm(
    out: str | Path,
    base: str | Path | None = None,
    shard_mb: float = 15.0,
    omit_from_layer: int | None = None,
) -> dict:
    """Copy all-MiniLM-L6-v2 (no pooler) as fp16 safetensors of <= `shard_mb` MB each + config + tokenizer.

    Tensors larger than a shard (the 23 MB word embeddings) are cut along dim 0 into `name::partN` pieces;
    `minilm_split.json` lists the files, and `reader_v3.load_base` joins them back. Small shards let the
    copy travel to a GPU machine a few files per call (each call carries at most ~18 MB besides the repo).
    With `omit_from_layer=L` the layers from L up are left out (`"omitted"` in the index): a reader checkpoint
    that trains them carries them itself, so the copy shrinks by their size (frozen_layers=4: 45 -> 38 MB).
    """
    import shutil

    from safetensors.torch import save_file
    from transformers import AutoModel

    src = base_model_path(base)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("minilm-*.safetensors"):
        old.unlink()
    model = AutoModel.from_pretrained(str(src), add_pooling_layer=False, dtype=torch.float32)
    limit = int(shard_mb * 1e6)
    pieces: list[tuple[str, torch.Tensor]] = []
    omitted = (
        [f"encoder.layer.{i}." for i in range(omit_from_layer, model.config.num_hidden_layers)]
        if (omit_from_layer is not None)
        else []
    )
    for name, t in model.state_dict().items():
        if name.startswith(tuple(omitted)):
            continue
        t = t.detach().to(torch.float16 if t.is_floating_point() else t.dtype).contiguous()
        nb = t.numel() * t.element_size()
        if nb <= limit:
            pieces.append((name, t))
            continue
        rows = max(1, limit * t.shape[0] // nb - 1)
        for i, part in enumerate(torch.split(t, rows, dim=0)):
            pieces.append((f"{name}::part{i}", part.contiguous()))
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in pieces:
        nb = t.numel() * t.element_size()
        if size + nb > limit and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nb
    files = []
    for i, sh in enumerate(shards):
        fname = f"minilm-{i + 1:02d}-of-{len(shards):02d}.safetensors"
        save_file(sh, str(out / fname), metadata={"format": "pt"})
        files.append(fname)
    model.config.save_pretrained(str(out))
    index = {"files": files, "dtype": "float16", **({"omitted": omitted} if omitted else {})}
    (out / "minilm_split.json").write_text(json.dumps(index, indent=1) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {"out": str(out), "bytes": sum(sizes.values()), "files": sizes}


# ------------------------------------------------------------------------------------------- prepare
def _read_prepared(path: str | Path) -> tuple[dict, list[Document], list[V3Sample]]:
    meta, docs, evals = {}, [], []
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if "meta" in d:
                meta = d["meta"]
            elif "doc" in d:
                docs.append(Document(**d["doc"]))
            else:
                evals.append(V3Sample.from_json(d["eval"]))
    return meta, docs, evals


def prepare(
    out: str | Path,
    chars: dict[str, int],
    eval_samples: int = 300,
    eval_tokens: int = 1500,
    seed: int = 0,
    docs: list[Document] | None = None,
) -> dict:
    """Write the compact training file: train documents (a char budget per domain) and fixed held-out samples.

    Documents of the hand-written evaluation set (bench/data/natural_docs.txt, bench/data/*natural*.jsonl),
    and any document with the same text (symlinked licenses), are left out of both sides.
    """
    import hashlib

    excluded = excluded_documents(ROOT)
    ex_hash = set()
    for x in excluded:
        p = Path(x)
        if p.is_file():
            ex_hash.add(hashlib.sha1(p.read_bytes()).hexdigest())
    rng = random.Random(seed)
    train: dict[str, list[Document]] = {}
    held: list[Document] = []
    n_excluded = 0
    for d in docs if docs is not None else iter_documents():
        if is_excluded(d.doc_id, excluded) or hashlib.sha1(d.text.encode()).hexdigest() in ex_hash:
            n_excluded += 1
            continue
        (held.append(d) if split_of(d.doc_id) == "heldout" else train.setdefault(d.domain, []).append(d))
    kept: list[Document] = []
    for dom, items in sorted(train.items()):
        rng.shuffle(items)
        used = 0
        for d in items:
            if used >= chars.get(dom, 0):
                break
            kept.append(d)
            used += len(d.text)
    maker = V3SampleMaker(held)
    evals = [maker.sample(random.Random(seed * 100003 + i), eval_tokens) for i in range(eval_samples)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "train_docs": len(kept),
        "train_chars": sum(len(d.text) for d in kept),
        "heldout_docs": len(held),
        "eval_samples": len(evals),
        "eval_tokens": eval_tokens,
        "excluded_docs": n_excluded,
        "excluded_list": sorted(excluded),
    }
    with lzma.open(out, "wt", encoding="utf-8", preset=9) as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for d in kept:
            f.write(json.dumps({"doc": asdict(d)}) + "\n")
        for s in evals:
            f.write(json.dumps({"eval": s.to_json()}) + "\n")
    meta["bytes"] = out.stat().st_size
    return meta


# ------------------------------------------------------------------------------------------- targets
def make_targets(s: V3Sample, inp: V3Input) -> dict | None:
    """Token/line targets of a sample (sample-local indices); None when the answer was cut off."""
    line_base: dict[int, int] = {}
    for idx, (p, _ln) in enumerate(inp.lines):
        line_base.setdefault(p, idx)
    lines: set[int] = set()
    for p, cs, ce in s.evidence:
        if p not in line_base:
            continue
        text = s.pieces[p].text
        a, b = text.count("\n", 0, cs), text.count("\n", 0, max(cs, ce - 1))
        lines.update(line_base[p] + ln for ln in range(a, b + 1))
    if s.answer is None:
        return {"start": -1, "end": -1, "lines": [], "abstain": 1}
    p, cs, ce = s.answer
    sel = np.nonzero((inp.piece_index == p) & (inp.char_end > cs) & (inp.char_start < ce))[0]
    if sel.size == 0:
        return None
    return {"start": int(sel[0]), "end": int(sel[-1]), "lines": sorted(lines), "abstain": 0}


def make_batch(samples: list[V3Sample], tok, cfg: ReaderV3Config) -> tuple[dict, list[dict], list]:
    inps, tgts, keep = [], [], []
    for s in samples:
        inp = build_v3_input(tok, s.question, s.pieces, cfg)
        t = make_targets(s, inp)
        if t is None or len(inp) == 0:
            continue
        inps.append(inp)
        tgts.append(t)
        keep.append(s)
    return collate(inps), tgts, list(zip(keep, inps, strict=True))


class BatchStream(torch.utils.data.IterableDataset):
    """Endless batches of ~batch_tokens context tokens, lengths drawn log-uniform in [min_len, max_len]."""

    def __init__(
        self, docs, tok, cfg, batch_tokens, min_len, max_len, seed, p_unanswerable=0.2, p_retrieved=0.0,
        written=(), p_written=0.0, p_keyed=0.0,
    ):  # fmt: skip
        self.docs, self.tok, self.cfg = docs, tok, cfg
        self.batch_tokens, self.min_len, self.max_len, self.seed = batch_tokens, min_len, max_len, seed
        self.p_unans, self.p_retrieved = p_unanswerable, p_retrieved
        self.written, self.p_written = list(written), p_written if written else 0.0
        self.p_keyed = p_keyed

    def _one(self, maker: V3SampleMaker, rng: random.Random, T: int) -> V3Sample:
        if rng.random() < self.p_keyed:
            s = maker.sample_keyed(rng, T)
            if s is not None:
                return s
        if rng.random() < self.p_written:
            s = maker.sample_written(rng, T, self.written)
            if s is not None:
                return s
        return maker.sample(rng, T)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 7919 + wid)
        maker = V3SampleMaker(self.docs, p_unanswerable=self.p_unans, p_retrieved=self.p_retrieved)
        while True:
            T = int(math.exp(rng.uniform(math.log(self.min_len), math.log(self.max_len))))
            B = max(1, self.batch_tokens // T)
            samples = [self._one(maker, rng, T) for _ in range(B)]
            batch, tgts, _ = make_batch(samples, self.tok, self.cfg)
            if tgts:
                yield batch, tgts


def split_written(
    docs: list[Document], written: list[WrittenQA], eval_tokens: int, every: int = 8, seed: int = 0
) -> tuple[list[WrittenQA], list[Document], list[V3Sample]]:
    """Hold out the written questions of every `every`-th source document (by sorted path), and those
    documents themselves: (training questions, training documents, held-out samples, one per question, at
    `eval_tokens`, always answerable). The held-out samples measure written-style questions on unseen
    documents during training; they are no user's questions."""
    sources = sorted({w.source for w in written})
    held = set(sources[::every])
    train_docs = [d for d in docs if d.doc_id not in held]
    maker = V3SampleMaker(docs, p_unanswerable=0.0)
    rng = random.Random(seed)
    evals = [s for w in written if w.source in held if (s := maker.sample_written(rng, eval_tokens, [w]))]
    return [w for w in written if w.source not in held], train_docs, evals


# ------------------------------------------------------------------------------------------- eval
_PUNCT = str.maketrans("", "", string.punctuation)


def _norm(s: str) -> str:
    return " ".join(s.lower().translate(_PUNCT).split())


@torch.no_grad()
def evaluate(
    net: ReaderV3Net, tok, samples: list[V3Sample], device, batch: int = 8, limit: int | None = None
):
    """Held-out span EM / F1 (answerable), line top-1 accuracy, abstention accuracy and mean probabilities."""
    net.eval()
    samples = samples[:limit] if limit else samples
    em = f1 = line_ok = n_ans = 0
    ab_ok, p_abst_ans, p_abst_un, n_un = 0, 0.0, 0.0, 0
    for i in range(0, len(samples), batch):
        b, tgts, pairs = make_batch(samples[i : i + batch], tok, net.cfg)
        if not tgts:
            continue
        b = {k: v.to(device) for k, v in b.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(b)
        cu = b["cu_seqlens"].tolist()
        line_off = 0
        for j, ((s, inp), t) in enumerate(zip(pairs, tgts, strict=True)):
            pa = float(torch.sigmoid(out["abstain"][j]))
            nl = len(inp.lines)
            lines = out["line"][line_off : line_off + nl].float().cpu()
            line_off += nl
            if s.answer is None:
                n_un += 1
                ab_ok += pa > 0.5
                p_abst_un += pa
                continue
            n_ans += 1
            ab_ok += pa <= 0.5
            p_abst_ans += pa
            st = out["start"][cu[j] : cu[j + 1]].float().cpu()
            en = out["end"][cu[j] : cu[j + 1]].float().cpu()
            spans = best_spans(inp.reader_input(), s.pieces, st, en, k=1, max_len=48)
            pred = _norm(spans[0].text) if spans else ""
            gold = _norm(s.answer_text)
            em += pred == gold
            pw, gw = pred.split(), gold.split()
            common = sum(min(pw.count(w), gw.count(w)) for w in set(gw))
            if common:
                pr, rc = common / len(pw), common / len(gw)
                f1 += 2 * pr * rc / (pr + rc)
            line_ok += int(lines.argmax()) in set(t["lines"])
    net.train()
    n = n_ans + n_un
    return {
        "n": n,
        "span_em": em / max(1, n_ans),
        "span_f1": f1 / max(1, n_ans),
        "line_acc": line_ok / max(1, n_ans),
        "abstain_acc": ab_ok / max(1, n),
        "p_abstain_answerable": p_abst_ans / max(1, n_ans),
        "p_abstain_unanswerable": p_abst_un / max(1, n_un),
    }


# ------------------------------------------------------------------------------------------- train
def _lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    prog = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog))


def train(a: argparse.Namespace) -> dict:
    t0 = time.time()
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    _, docs, evals = _read_prepared(a.data)
    state_path = Path(a.state)
    state = torch.load(state_path, map_location="cpu", weights_only=False) if state_path.is_file() else None
    if state is None and a.init:  # fine-tune an exported checkpoint (its config wins over the flags)
        net, tok, _ = load_net(a.init, a.base)
        cfg = net.cfg
    else:
        cfg = (
            ReaderV3Config.from_dict(state["cfg"])
            if state
            else ReaderV3Config(
                gdn_layers=a.gdn_layers, frozen_layers=a.frozen_layers, window_tokens=a.window_tokens
            )
        )
        net, tok = build_net(cfg, a.base)
    if state:
        missing, unexpected = net.load_state_dict(state["model"], strict=False)
        assert not unexpected, unexpected
    net.to(dev).train()
    base_params = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("base.")]
    new_params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("base.")]
    opt = torch.optim.AdamW(
        [{"params": base_params, "lr": a.base_lr}, {"params": new_params, "lr": a.lr}],
        betas=(0.9, 0.95),
        weight_decay=0.01,
    )
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    step = 0
    if state:
        opt.load_state_dict(state["opt"])
        step = state["step"]
    log_path = Path(a.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "model": saved_state(net),
                "opt": opt.state_dict(),
                "step": step,
                "cfg": asdict(cfg),
                "args": vars(a),
            },
            tmp,
        )
        os.replace(tmp, state_path)

    def log(rec: dict) -> None:
        rec = {"step": step, "elapsed_s": round(time.time() - t0, 1), **rec}
        with log_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    written, written_evals = [], []
    if a.written:
        written, docs, written_evals = split_written(docs, load_written(a.written), a.eval_tokens)
        log({"type": "written", "train_questions": len(written), "heldout_samples": len(written_evals)})
        written_evals = written_evals[: a.written_eval_n]  # 0 on a CPU: each pass takes minutes there
        if a.init and step == 0 and written_evals:  # the starting point, for the fine-tune to beat
            log({"type": "eval_written_init", **evaluate(net.to(dev), tok, written_evals, dev)})
    stream = BatchStream(
        docs, tok, cfg, a.batch_tokens, a.min_len, a.max_len, seed=a.seed * 1000003 + step,
        p_retrieved=a.p_retrieved, written=written, p_written=a.p_written, p_keyed=a.p_keyed,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=a.workers,
        prefetch_factor=4 if a.workers else None,
        persistent_workers=False,
    )
    dev_evals = evals[: a.eval_n]
    acc: dict[str, float] = {}
    n_acc = 0
    tok_seen = 0
    stopped = "steps"
    for batch, tgts in loader:
        if step >= a.steps:
            break
        if (time.time() - t0) / 60 > a.max_minutes:
            stopped = "time"
            break
        mult = _lr(step, a.steps, a.warmup)
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * mult
        b = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = net(b)
        losses = v3_losses(out, b, tgts)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        gn = torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        tok_seen += int(b["gather"].shape[0])
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if step % a.log_every == 0:
            log(
                {
                    "type": "train",
                    **{k: round(v / n_acc, 4) for k, v in acc.items()},
                    "grad_norm": round(float(gn), 3),
                    "lr_mult": round(mult, 4),
                    "tokens": tok_seen,
                    "tok_per_s": round(tok_seen / (time.time() - t0)),
                }
            )
            acc, n_acc = {}, 0
        if step % a.save_every == 0:
            save()
        if a.eval_every and step % a.eval_every == 0 and dev_evals:
            log({"type": "eval", **evaluate(net, tok, dev_evals, dev)})
    save()
    final = {"type": "eval", **evaluate(net, tok, dev_evals, dev)} if dev_evals else {}
    if final:
        log(final)
    if written_evals:
        log({"type": "eval_written", **evaluate(net, tok, written_evals, dev)})
    log({"type": "stop", "reason": stopped, "resume": stopped == "time"})
    return final


# ------------------------------------------------------------------------------------------- export / eval
def export(a: argparse.Namespace) -> None:
    state = torch.load(a.state, map_location="cpu", weights_only=False)
    cfg = ReaderV3Config.from_dict(state["cfg"])
    net, _ = build_net(cfg, a.base)
    _, unexpected = net.load_state_dict(state["model"], strict=False)
    assert not unexpected, unexpected
    out = save_checkpoint(
        net,
        a.out,
        extra={"train_step": state["step"], "train_args": state.get("args", {})},
        dtype=getattr(torch, a.dtype),
    )
    sizes = {p.name: p.stat().st_size for p in sorted(Path(out).iterdir())}
    print(json.dumps({"out": str(out), "step": state["step"], "files": sizes, "bytes": sum(sizes.values())}))


def eval_ckpt(a: argparse.Namespace) -> None:
    from gdn2_model.reader_v3 import load_net

    net, tok, _ = load_net(a.ckpt, a.base)
    dev = torch.device(a.device)
    _, _, evals = _read_prepared(a.data)
    print(json.dumps(evaluate(net.to(dev), tok, evals, dev, limit=a.limit)))


def _read_source(src: str) -> str | None:
    """Text of a natural-question source as the corpus reads it (man pages troff-stripped)."""
    import sysconfig

    from gdn2_model.data.corpus import _read_text, strip_troff

    p = Path(src.replace("{stdlib}", sysconfig.get_paths()["stdlib"]))
    if not p.is_file():
        return None
    t = _read_text(p, 400_000)
    if t and "/man/" in str(p):
        t = strip_troff(t)
    return t


def eval_natural(a: argparse.Namespace) -> dict:
    """Reader alone on hand-written questions: context = the source document's chunks ranked by word overlap
    with the question (a stand-in for retrieval) up to `--tokens`; unanswerable rows (no answers) score
    abstention. Reports EM, F1, answer-contained, evidence-line hit and abstention accuracy."""
    from gdn2_model.data.sample import chunk_text
    from gdn2_model.prompt import ContextPiece
    from gdn2_model.reader_v3 import ReaderV3

    r = ReaderV3.load(a.ckpt, a.base, device=a.device)
    rows = [json.loads(x) for x in Path(a.questions).read_text().splitlines() if x.strip()]
    rows = rows[:: max(1, len(rows) // a.limit)][: a.limit] if a.limit else rows
    tot = {
        "n": 0,
        "em": 0.0,
        "f1": 0.0,
        "contains": 0.0,
        "line_hit": 0.0,
        "n_ans": 0,
        "n_unans": 0,
        "abstain_ok": 0.0,
    }
    per_dom: dict[str, list[float]] = {}
    t0 = time.time()
    for row in rows:
        text = _read_source(row.get("source", ""))
        if not text:
            continue
        qw = set(re.findall(r"[a-z0-9]+", row["question"].lower()))
        chunks = [text[s:e] for s, e in chunk_text(text, 1200)]
        ranked = sorted(chunks, key=lambda c: -len(qw & set(re.findall(r"[a-z0-9]+", c.lower()))))
        pieces = [ContextPiece(c, Path(row["source"]).name) for c in ranked]
        spans = r.extract_spans(row["question"], pieces, k=1, max_answer_tokens=48, max_tokens=a.tokens)
        pa = r.no_answer_prob(row["question"], pieces, max_tokens=a.tokens)
        tot["n"] += 1
        golds = [_norm(x) for x in row.get("answers") or []]
        if not golds:
            tot["n_unans"] += 1
            tot["abstain_ok"] += pa > 0.5
            continue
        tot["n_ans"] += 1
        tot["abstain_ok"] += pa <= 0.5
        pred = _norm(spans[0].text) if spans else ""
        em = float(pred in golds)
        f1 = 0.0
        for g in golds:
            pw, gw = pred.split(), g.split()
            c = sum(min(pw.count(w), gw.count(w)) for w in set(gw))
            if c:
                f1 = max(f1, 2 * c / (len(pw) + len(gw)))
        tot["em"] += em
        tot["f1"] += f1
        tot["contains"] += float(any(g and (g in pred or (pred and pred in g)) for g in golds))
        lines = r.score_lines(row["question"], pieces, max_tokens=a.tokens)
        ev = _norm(row.get("evidence") or row["answers"][0])
        if lines:
            pi, ln, _ = lines[0]
            line = _norm(pieces[pi].text.split("\n")[ln])
            tot["line_hit"] += float(
                bool(line) and (line in ev or ev[:40] in line or any(g in line for g in golds))
            )
        per_dom.setdefault(row.get("domain", "?"), []).append(f1)
    na = max(1, tot["n_ans"])
    out = {
        "n": tot["n"],
        "answerable": tot["n_ans"],
        "unanswerable": tot["n_unans"],
        "em": tot["em"] / na,
        "f1": tot["f1"] / na,
        "contains": tot["contains"] / na,
        "line_hit": tot["line_hit"] / na,
        "abstain_acc": tot["abstain_ok"] / max(1, tot["n"]),
        "f1_by_domain": {k: round(sum(v) / len(v), 3) for k, v in per_dom.items()},
        "tokens": a.tokens,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export-minilm", help="fp16 safetensors copy of the MiniLM base")
    p.add_argument("out")
    p.add_argument("--base", default=None)
    p.add_argument("--shard-mb", type=float, default=15.0)
    p.add_argument(
        "--omit-from-layer", type=int, default=None, help="leave out the layers a checkpoint trains"
    )
    p = sub.add_parser("prepare", help="write the compact training file")
    p.add_argument("--out", default="runs/v3/data.jsonl.xz")
    p.add_argument("--legal-chars", type=float, default=6e6)
    p.add_argument("--support-chars", type=float, default=12e6)
    p.add_argument("--code-chars", type=float, default=6e6)
    p.add_argument("--eval-samples", type=int, default=300)
    p.add_argument("--eval-tokens", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("train", help="train (resumes from --state)")
    p.add_argument("--data", default="runs/v3/data.jsonl.xz")
    p.add_argument("--base", default=None, help="MiniLM folder (default: the installed package)")
    p.add_argument("--state", default="runs/v3/train/state.pt")
    p.add_argument("--log", default="runs/v3/train/log.jsonl")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=3000, help="schedule length (total over all resumed calls)")
    p.add_argument("--init", default=None, help="start from this exported checkpoint (fine-tuning)")
    p.add_argument("--max-minutes", type=float, default=8.0)
    p.add_argument("--batch-tokens", type=int, default=24576)
    p.add_argument("--min-len", type=int, default=384)
    p.add_argument("--max-len", type=int, default=6144)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--base-lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--gdn-layers", type=int, default=3)
    p.add_argument("--frozen-layers", type=int, default=4)
    p.add_argument("--window-tokens", type=int, default=200)
    p.add_argument(
        "--p-retrieved", type=float, default=0.0,
        help="share of contexts laid out as keyword retrieval ranks them (hard distractors, gold at rank)",
    )  # fmt: skip
    p.add_argument(
        "--written", default=None,
        help="written questions (gdn2_model/data/written_questions.jsonl); every 8th document held out",
    )  # fmt: skip
    p.add_argument("--p-written", type=float, default=0.3, help="share of samples from --written")
    p.add_argument(
        "--p-keyed", type=float, default=0.0, help="share of key-value fact samples (data/keyed_facts.py)"
    )
    p.add_argument("--eval-tokens", type=int, default=1500, help="context of the held-out written samples")
    p.add_argument("--written-eval-n", type=int, default=None, help="held-out written samples scored (all)")
    p.add_argument("--workers", type=int, default=min(8, max(0, (os.cpu_count() or 1) - 2)))
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("export", help="write the checkpoint folder from a training state")
    p.add_argument("--state", default="runs/v3/train/state.pt")
    p.add_argument("--out", default="runs/v3/ckpt")
    p.add_argument("--base", default=None)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="stored weights")
    p = sub.add_parser("eval", help="held-out metrics of a checkpoint folder")
    p.add_argument("--ckpt", default="runs/v3/ckpt")
    p.add_argument("--data", default="runs/v3/data.jsonl.xz")
    p.add_argument("--base", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, default=None)
    p = sub.add_parser("eval-natural", help="reader alone on hand-written questions (source doc as context)")
    p.add_argument("--ckpt", default="runs/v3/ckpt")
    p.add_argument("--questions", default="bench/data/natural_dev.jsonl")
    p.add_argument("--base", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    if a.cmd == "export-minilm":
        print(json.dumps(export_minilm(a.out, a.base, a.shard_mb, a.omit_from_layer)))
    elif a.cmd == "prepare":
        chars = {"legal": int(a.legal_chars), "support": int(a.support_chars), "code": int(a.code_chars)}
        print(json.dumps(prepare(a.out, chars, a.eval_samples, a.eval_tokens, a.seed)))
    elif a.cmd == "train":
        train(a)
    elif a.cmd == "export":
        export(a)
    elif a.cmd == "eval-natural":
        eval_natural(a)
    else:
        eval_ckpt(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
