"""CLI conventions: help, version, user errors as one line with exit 2."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import cli
from rag import __version__

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for name in ("ingest", "ask", "search", "info"):
        assert name in result.output


def test_version():
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_console_script_runs_as_subprocess():
    out = subprocess.run(
        [sys.executable, "-c", "import cli; cli.main()", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"rag {__version__}"


def test_unknown_option_is_usage_error():
    result = runner.invoke(cli.app, ["ask", "--no-such-flag", "q"])
    assert result.exit_code == 2
