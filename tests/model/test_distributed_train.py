"""DDP training on 2 gloo processes (CPU) follows the one-process loss curve on the same global batches.

A 3-row global batch splits 2 + 1, so the per-share loss weighting is exercised: an unweighted mean of
the shares' losses would give a different gradient and a different curve.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gdn2_model.data.corpus import Document
from gdn2_model.distributed import DistributedTrainer, RankRows, Worker, run_workers
from gdn2_model.distributed.ddp import check_shares
from gdn2_model.tokenizer import train_tokenizer
from gdn2_model.train import Trainer, named_config
from gdn2_model.training_data import Phase

STEPS = 4


def _cfg():
    return named_config(
        "tiny", steps=STEPS, curriculum=[Phase(0.0, 256, 3)], eval_every=1, save_every=STEPS, warmup=1
    )


def _docs() -> list[Document]:
    names = ["Apache-2.0", "GPL-3", "MPL-2.0"]
    paths = [Path("/usr/share/common-licenses") / n for n in names]
    if not all(p.is_file() for p in paths):
        pytest.skip("needs /usr/share/common-licenses (a Debian-like machine)")
    return [Document(str(p), "legal", p.name, p.read_text()) for p in paths]


@pytest.fixture(scope="module")
def data():
    docs = _docs()
    return docs, train_tokenizer([d.text for d in docs], vocab_size=2000)


def _ddp_worker(w: Worker, docs, tok, out_dir: str) -> dict:
    tr = DistributedTrainer(_cfg(), docs, docs, tok, out_dir, "cpu")
    tr.train(log=lambda *_: None)
    return {"history": tr.history, "state": {k: v.clone() for k, v in tr.model.state_dict().items()}}


def test_ddp_follows_the_one_process_loss_curve(data, tmp_path):
    docs, tok = data
    one = Trainer(_cfg(), docs, docs, tok, tmp_path / "one", "cpu")
    one.train(log=lambda *_: None)
    ranks = run_workers(_ddp_worker, 2, docs, tok, str(tmp_path / "ddp"), timeout_s=300)
    ref = one.history
    assert [r["step"] for r in ref] == list(range(1, STEPS + 1))
    assert ref[-1]["loss"] < ref[0]["loss"]
    for got in ranks:
        hist = got["history"]
        assert [r["step"] for r in hist] == [r["step"] for r in ref]
        for key in ("loss", "span_acc", "grad_norm", "eval_loss_256", "eval_acc_256"):
            assert [r[key] for r in hist] == pytest.approx([r[key] for r in ref], rel=2e-4, abs=1e-6), key
        for name, value in one.model.state_dict().items():
            if name == "qa_outputs.bias":
                # a softmax is shift-invariant, so this bias's true gradient is 0 and Adam turns float
                # noise into steps of up to lr: it may differ by that much, no more
                assert float((got["state"][name] - value).abs().max()) <= _cfg().lr * STEPS
                continue
            torch.testing.assert_close(got["state"][name], value, rtol=1e-3, atol=1e-5, msg=name)
    # tokens are counted over both ranks: the whole global batch, as one process counts it
    assert ranks[0]["history"][0]["tok_per_s"] > 0
    # only rank 0 writes the run folder, with the same history
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "history.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref], rel=2e-4)
    assert (tmp_path / "ddp" / "resume.pt").is_file()


def test_rank_rows_split_every_global_batch():
    batch = {"input_ids": torch.arange(15).view(5, 3), "lengths": torch.arange(5)}

    class Steps(torch.utils.data.Dataset):
        def __getitem__(self, step):
            return batch

    shares = [RankRows(Steps(), r, 2)[0] for r in range(2)]
    assert torch.equal(torch.cat([s["input_ids"] for s in shares]), batch["input_ids"])
    assert [int(s["global_rows"]) for s in shares] == [5, 5]
    assert [s["lengths"].tolist() for s in shares] == [[0, 1, 2], [3, 4]]


def test_ddp_refuses_batches_smaller_than_the_ranks():
    check_shares([Phase(0.0, 256, 2), Phase(0.5, 512, 2)], 2)
    with pytest.raises(ValueError, match=r"batch sizes \[1\] are smaller than the 2 ranks"):
        check_shares([Phase(0.0, 256, 2), Phase(0.5, 512, 1)], 2)


def test_the_ddp_entry_without_torchrun_says_so_and_exits_2(monkeypatch, capsys):
    from gdn2_model.distributed.train_ddp import main

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert main(["--config", "tiny"]) == 2
    assert "start this with torchrun" in capsys.readouterr().err
