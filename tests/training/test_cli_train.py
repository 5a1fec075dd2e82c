"""`rag train` through the CLI: a tiny run on a prepared folder, and a one-line error without one."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gdn2_cli import app
from gdn2_model.data.corpus import build_corpus
from gdn2_model.tokenizer import save_tokenizer


def test_rag_train_tiny_run_and_export(docs, tok, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    build_corpus(data / "corpus.jsonl.xz", {"legal": 10**9, "support": 10**9, "code": 10**9}, docs=docs)
    save_tokenizer(tok, data)
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "2",
            "--export",
            str(tmp_path / "ck"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ck" / "tokenizer.json").is_file() and (tmp_path / "run" / "resume.pt").is_file()
    cfg = json.loads((tmp_path / "ck" / "train_config.json").read_text())
    assert cfg["name"] == "tiny" and cfg["steps"] == 2


def test_rag_train_without_data_is_a_user_error(tmp_path):
    res = CliRunner().invoke(app, ["train", "--config", "tiny", "--data", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "no corpus.jsonl.xz" in res.output


def test_rag_train_unknown_config_is_a_user_error(tmp_path):
    res = CliRunner().invoke(app, ["train", "--config", "huge", "--data", str(tmp_path)])
    assert res.exit_code == 2
    assert "unknown config 'huge'" in res.output
