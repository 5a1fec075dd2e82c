"""Our top-level import names must be ours alone.

transformers 5.25 started to depend on Hugging Face's `kernels` package, whose import name was the name of
our operator package: a fresh install imported the wrong one. Every top-level name we ship now carries the
`gdn2_` prefix; these tests fail if any installed distribution also provides one of them, or if
transformers' hub-kernels integration and our operator cannot be imported side by side.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUR_DIST = "gdn2-rag"


def shipped_top_level_names() -> set[str]:
    """The top-level import names pyproject.toml ships: its packages (by include pattern) and py-modules."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["packages"]["find"]["include"]
    packages = {
        d.name
        for d in ROOT.iterdir()
        if (d / "__init__.py").is_file() and any(Path(d.name).match(p.rstrip("*") or p) for p in patterns)
    }
    return packages | set(setuptools.get("py-modules", []))


def test_shipped_names_are_prefixed():
    names = shipped_top_level_names()
    assert names == {"gdn2_kernels", "gdn2_model", "gdn2_ingest", "gdn2_rag", "gdn2_cli"}, names


def test_no_other_distribution_provides_our_names():
    owners = importlib.metadata.packages_distributions()
    clashes = {name: sorted(set(owners.get(name, [])) - {OUR_DIST}) for name in shipped_top_level_names()}
    clashes = {name: dists for name, dists in clashes.items() if dists}
    assert not clashes, f"top-level names also provided by other distributions: {clashes}"


def test_our_names_resolve_to_this_checkout():
    for name in shipped_top_level_names():
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        assert Path(spec.origin).resolve().is_relative_to(ROOT), f"{name} resolves to {spec.origin}"


def test_transformers_hub_kernels_beside_our_operator():
    code = """
import gdn2_kernels, gdn2_model, gdn2_ingest, gdn2_rag
import transformers
from transformers.integrations import hub_kernels  # imports Hugging Face's `kernels` when installed
from transformers.utils import import_utils
if import_utils.is_kernels_available():
    import kernels  # theirs: must not be ours
    assert "gdn2" not in getattr(kernels, "__file__", ""), kernels.__file__
cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2, vocab_size=50)
m = transformers.AutoModelForCausalLM.from_config(cfg)
import torch
assert m(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)
from gdn2_kernels import gdn2, gdn2_step
from gdn2_model import GDN2Config
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
