"""`rag serve` from the command line: start-up errors as one line (exit 2), and one real run over an index
built by `rag ingest` with the real MiniLM embedder (the server wraps that embedder to batch queries)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest
from rag_corpus import CONTRACT, HELP_PAGE
from serve_harness import REPO, free_port


def _rag(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import gdn2_cli; gdn2_cli.main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _one_error_line(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.stderr


def test_start_up_errors_are_one_line(tmp_path):
    _one_error_line(_rag("serve", "--index", str(tmp_path / "none")), "no index at")
    _one_error_line(_rag("serve", "--host", "0.0.0.0", "--index", str(tmp_path)), "give an API key")
    empty = tmp_path / "key.txt"
    empty.write_text("\n")
    _one_error_line(_rag("serve", "--api-key-file", str(empty), "--index", str(tmp_path)), "is empty")
    short = tmp_path / "short.txt"
    short.write_text("abc")
    _one_error_line(_rag("serve", "--api-key-file", str(short), "--index", str(tmp_path)), "at least 16")
    _one_error_line(_rag("serve", "--api-key-file", str(tmp_path / "nokey"), "--index", str(tmp_path)),
                    "cannot read the API key file")  # fmt: skip


def test_rag_serve_over_a_real_index(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "contract.txt").write_text(CONTRACT)
    (docs / "password.md").write_text(HELP_PAGE)
    index = tmp_path / "ix"
    ingest = _rag("ingest", str(docs), "--index", str(index), "--json")
    assert ingest.returncode == 0, ingest.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import gdn2_cli; gdn2_cli.main()", "serve", "--index", str(index),
         "--port", str(port), "--no-reader"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail("rag serve did not start")
        answer = httpx.post(
            url + "/ask", json={"question": "How much notice ends the agreement?"}, timeout=60
        )
        data = answer.json()
        assert data["mode"] == "retrieval-only" and data["citations"][0]["path"].endswith("contract.txt")
        assert "ninety days" in data["answer"]

        async def searches() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
                qs = ["reset link expiry", "governing law", "late payment interest", "two-factor"]
                return await asyncio.gather(*(ac.post("/search", json={"query": q, "k": 1}) for q in qs))

        found = [r.json()["passages"][0]["path"] for r in asyncio.run(searches())]
        assert [p.rsplit("/", 1)[-1] for p in found] == [
            "password.md",
            "contract.txt",
            "contract.txt",
            "password.md",
        ]
    finally:
        proc.terminate()
        proc.wait(30)
    # SIGTERM: a graceful shutdown (uvicorn then re-raises the signal, so the status says SIGTERM), and the
    # start-up line names the index and the answer mode
    assert proc.returncode in (0, -signal.SIGTERM)
    err = proc.stderr.read()
    assert "serving" in err and "retrieval only" in err and "Traceback" not in err
