"""CLI conventions: help, version, user errors as one line with exit 2."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import gdn2_cli
from gdn2_rag import __version__

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(gdn2_cli.app, ["--help"])
    assert result.exit_code == 0
    for name in ("ingest", "ask", "search", "info"):
        assert name in result.output


def test_version():
    result = runner.invoke(gdn2_cli.app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_console_script_runs_as_subprocess():
    out = subprocess.run(
        [sys.executable, "-c", "import gdn2_cli; gdn2_cli.main()", "--version"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"rag {__version__}"


def test_unknown_option_is_usage_error():
    result = runner.invoke(gdn2_cli.app, ["ask", "--no-such-flag", "q"])
    assert result.exit_code == 2


def _rag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import gdn2_cli; gdn2_cli.main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_ask_without_index_exits_2_with_one_line(tmp_path):
    _one_error_line(_rag("ask", "What is the term?", "--index", str(tmp_path / "none")), "no index at")
    _one_error_line(_rag("search", "term", "--index", str(tmp_path / "none")), "no index at")
    _one_error_line(_rag("info", "--index", str(tmp_path / "none")), "no index at")


def test_ask_argument_errors_exit_2(tmp_path):
    _one_error_line(_rag("ask", "  ", "--index", str(tmp_path)), "question is empty")
    _one_error_line(_rag("ask", "q", "--model", str(tmp_path / "no-model")), "does not exist")


def test_cuda_without_cuda_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    _one_error_line(_rag("ask", "q", "--device", "cuda", "--index", str(tmp_path)), "CUDA is not available")


def test_usage_errors_are_one_line_exit_2(tmp_path):
    # typer's default is a multi-line box; ours is one `error:` line like every other user error
    _one_error_line(_rag("ask", "q", "-k", "-1"), "--top-k")
    _one_error_line(_rag("ask", "q", "--context-tokens", "5"), "--context-tokens")
    _one_error_line(_rag("search", "q", "-k", "x"), "--top-k")
    _one_error_line(_rag("ask", "--no-such-flag", "q"), "No such option")
    _one_error_line(_rag("ask"), "Missing argument")
    _one_error_line(_rag("no-such-command"), "No such command")


def test_ingest_unknown_domain_exits_2(tmp_path):
    (tmp_path / "a.txt").write_text("text\n")
    _one_error_line(
        _rag("ingest", str(tmp_path / "a.txt"), "--index", str(tmp_path / "i"), "--domain", "finance"),
        "unknown domain",
    )


def test_error_text_with_brackets_is_printed_verbatim(tmp_path):
    # messages quote user input (paths, domains): never read as rich markup
    _one_error_line(_rag("ask", "q", "--index", str(tmp_path / "no[bold]ne")), "no[bold]ne")
    _one_error_line(
        _rag("ingest", str(tmp_path), "--index", str(tmp_path / "i"), "--domain", "[/x]"), "'[/x]'"
    )


def test_closed_stdout_pipe_ends_quietly():
    # `rag ask --json | head -1`: no "internal error" line when the pipe's reader goes away
    code = (
        "import sys, gdn2_cli\n"
        "try:\n    gdn2_cli.run_guarded(lambda: print('x' * 1_000_000))\n"
        "except gdn2_cli.typer.Exit as e:\n    sys.exit(e.exit_code)"
    )
    out = subprocess.run(
        f'{sys.executable} -c "{code}" | head -c 1', shell=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout == "x" and out.stderr == "", out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = _rag("--debug", "ask", "q", "--index", str(tmp_path / "none"))
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "RagError" in out.stderr


def test_cli_import_leaves_heavy_packages_alone():
    # `rag --help` must start fast: the CLI imports torch, transformers, faiss and bm25s only when a command
    # needs them (timed in the closing notes, not here: a timed test fails on a busy machine)
    code = (
        "import sys, gdn2_cli; print(sorted({'torch', 'transformers', 'faiss', 'bm25s'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
