"""Training on CPU: a few steps reduce the loss; save + resume continues identically; export loads."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gdn2_model.prompt import ContextPiece
from gdn2_model.reader import Reader
from gdn2_model.train import Trainer, build_model, forward_loss, lr_at, make_optimizer, named_config
from gdn2_model.training_data import Phase, ReaderBatches, span_loss


def _tiny(**kw):
    return named_config("tiny", **kw)


def test_training_steps_reduce_loss_on_a_fixed_batch(docs, tok):
    cfg = _tiny()
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = make_optimizer(cfg, model)
    batch = ReaderBatches(tok, docs, cfg.curriculum, seed=1)[0]
    losses = []
    for _ in range(12):
        loss, _ = forward_loss(model, batch, bf16=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_span_loss_is_zero_only_for_confident_gold():
    batch = {
        "candidates": torch.tensor([[False, True, True, True]]),
        "gold_start": torch.tensor([[False, True, False, False]]),
        "gold_end": torch.tensor([[False, False, True, False]]),
    }
    good = span_loss(torch.tensor([[0.0, 50.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 50.0, 0.0]]), batch)
    flat = span_loss(torch.zeros(1, 4), torch.zeros(1, 4), batch)
    assert good.item() < 1e-6
    assert flat.item() == pytest.approx(2 * torch.log(torch.tensor(3.0)).item(), rel=1e-5)


def test_batches_depend_on_the_step_only(docs, tok):
    cur = [Phase(0.0, 256, 2), Phase(0.5, 384, 1)]
    a = ReaderBatches(tok, docs, cur, seed=4, steps=10)
    b = ReaderBatches(tok, docs, cur, seed=4, steps=10)
    assert torch.equal(a[3]["input_ids"], b[3]["input_ids"])
    assert not torch.equal(a[3]["input_ids"], a[4]["input_ids"])
    assert a[4]["input_ids"].shape == (2, 256) and a[5]["input_ids"].shape == (1, 384)
    with pytest.raises(ValueError, match="first phase"):
        ReaderBatches(tok, docs, [Phase(0.3, 256, 2)], seed=0)


def test_lr_schedule_warms_up_then_decays():
    cfg = _tiny(steps=100, warmup=10, lr=1.0)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 99) == pytest.approx(cfg.min_lr_ratio, abs=1e-3)


def test_resume_continues_identically(docs, tok, tmp_path):
    cfg = _tiny(steps=4, save_every=2, eval_every=2)
    full = Trainer(cfg, docs, docs, tok, tmp_path / "full", "cpu")
    full.train()
    half = Trainer(cfg, docs, docs, tok, tmp_path / "half", "cpu")
    half.train(steps=2)
    resumed = Trainer(cfg, docs, docs, tok, tmp_path / "half", "cpu")
    assert resumed.load_resume() and resumed.step == 2
    resumed.train()
    assert resumed.step == 4
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # the run that stopped early logged its last step too; the rows of step 4 match exactly
    assert full.history[-1] == {
        **resumed.history[-1],
        "tok_per_s": full.history[-1]["tok_per_s"],
        "elapsed_s": full.history[-1]["elapsed_s"],
    }


def test_evaluates_every_eval_every_steps_even_off_the_log_interval(docs, tok, tmp_path):
    # rows are logged every 10 steps; an eval_every that is not a multiple of 10 must still be honoured
    cfg = _tiny(steps=4, eval_every=2, save_every=4)
    tr = Trainer(cfg, docs, docs, tok, tmp_path / "run", "cpu")
    tr.train()
    assert [r["step"] for r in tr.history if "eval_loss_256" in r] == [2, 4]


@pytest.mark.parametrize("arch", ["gdn2", "transformer"])
def test_export_then_reader_loads_and_extracts(docs, tok, tmp_path, arch):
    cfg = dataclasses.replace(_tiny(steps=2, eval_every=2, save_every=2), arch=arch)
    tr = Trainer(cfg, docs, docs, tok, tmp_path / "run", "cpu")
    tr.train()
    ck = tr.export(tmp_path / "ck", {"seed": cfg.seed})
    assert (ck / "curves.png").stat().st_size > 1000
    assert all(f.stat().st_size <= 15_000_000 for f in ck.glob("*.safetensors"))
    reader = Reader.load(ck)
    pieces = [ContextPiece("The fee is 42 dollars.", "a"), ContextPiece("", "empty")]
    span = reader.extract("What is the fee?", pieces)
    assert span.text == pieces[span.piece_index].text[span.char_start : span.char_end]
    assert 0.0 < span.score <= 1.0
    assert reader.identity["params"] == tr.params
    # hashed once per loaded reader, not per answer
    assert reader.identity is reader.identity
