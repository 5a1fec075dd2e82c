"""The hand-written natural question sets (dev, final, holdout) pass bench/rag/check_natural_set.py."""

import importlib.util
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECKER = os.path.join(ROOT, "bench", "rag", "check_natural_set.py")


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/common-licenses") or shutil.which("man") is None,
    reason="the source documents (licenses, man pages) are not installed here",
)
def test_natural_sets_pass_checker(capsys):
    spec = importlib.util.spec_from_file_location("check_natural_set", CHECKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["check_natural_set.py"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "holdout: 72 questions" in out
