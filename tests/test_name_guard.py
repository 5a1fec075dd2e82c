"""Our top-level `kernels` and `model` packages must not confuse transformers.

transformers probes for the Hugging Face hub package called `kernels`; with ours installed it must
neither think that package is present nor fail to build a model.
"""

from __future__ import annotations

import subprocess
import sys


def test_transformers_and_our_packages_coexist():
    code = """
import kernels, model, ingest, rag
import transformers
from transformers.utils import import_utils
assert not import_utils.is_kernels_available(), "transformers mistook our kernels/ for the hub package"
cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2, vocab_size=50)
m = transformers.AutoModelForCausalLM.from_config(cfg)
import torch
out = m(torch.tensor([[1, 2, 3]]))
assert out.logits.shape == (1, 3, 50)
from kernels import gdn2
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
