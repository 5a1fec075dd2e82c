"""`rag serve` over HTTP: a real uvicorn server on 127.0.0.1 (subprocess), real clients (httpx, openai).

The server reads the tiny test corpus with a tiny random GDN-2 reader through the micro-batcher, so
routes, streaming, batching, limits and errors are all the real code; only the index and the weights are
small. One server per module (start-up imports torch); the back-pressure and restart tests start their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from serve_harness import TestServer, free_port

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "How much notice is needed to terminate the agreement?"
# every batched read takes at least this long, so streamed passages must arrive well before the answer
READ_DELAY_S = 0.4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = TestServer(
        tmp_path_factory.mktemp("serve"), None, "--reader", "--api-key", KEY, "--max-body-bytes", "4096",
        "--read-delay", str(READ_DELAY_S),
    )  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


def _error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()["error"]
    assert body["code"] == code and body["message"] and "Traceback" not in resp.text
    return body


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, json.loads(data)))
    return out


def test_health_needs_no_key_and_everything_else_does(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    body = _error(httpx.get(server.url + "/info"), 401, "invalid_api_key")
    assert "missing" in body["message"]
    _error(httpx.post(server.url + "/ask", json={"question": QUESTION}, headers={"X-API-Key": "wrong"}), 401,
           "invalid_api_key")  # fmt: skip
    assert httpx.get(server.url + "/info", headers={"X-API-Key": KEY}).status_code == 200


def test_info_reports_index_reader_and_limits(client):
    info = client.get("/info").json()
    assert info["index"]["chunks"] > 0
    assert info["reader"]["policy"] == "on"
    assert info["server"]["max_body_bytes"] == 4096


def test_search_returns_ranked_passages_with_locations(client):
    data = client.post("/search", json={"query": "reset link expires", "k": 2}).json()
    assert len(data["passages"]) == 2
    top = data["passages"][0]
    assert top["path"].endswith("password.md") and top["rank"] == 1 and ":" in top["location"]
    filtered = client.post("/search", json={"query": "notice", "domain": "code"}).json()["passages"]
    assert all(p["domain"] == "code" for p in filtered)


def test_ask_answers_with_verified_citations(client):
    data = client.post("/ask", json={"question": QUESTION}).json()
    assert data["mode"] == "reader" and data["answer"]
    assert data["citations"] and all(c["verified"] for c in data["citations"])
    assert data["citations"][0]["path"].endswith("contract.txt")


def test_ask_stream_sends_passages_then_answer_then_citations(client):
    plain = client.post("/ask", json={"question": QUESTION}).json()
    arrived: dict[str, float] = {}
    text = ""
    with client.stream("POST", "/ask", json={"question": QUESTION, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for chunk in resp.iter_text():
            text += chunk
            for name in ("passages", "answer"):
                if f"event: {name}\n" in text:
                    arrived.setdefault(name, time.monotonic())
    events = _events(text)
    assert [name for name, _ in events] == ["passages", "answer", "citations", "done"]
    # really streamed: the passages came out while the reader was still reading
    assert arrived["answer"] - arrived["passages"] >= READ_DELAY_S * 0.75
    assert [p["chunk_id"] for p in events[0][1]["passages"]] == [p["chunk_id"] for p in plain["passages"]]
    assert events[1][1]["answer"] == plain["answer"]
    assert events[2][1]["citations"] == plain["citations"]
    assert events[3][1]["context"]["tokens"] == plain["context"]["tokens"]


def test_bad_requests_get_one_clear_json_error(client):
    _error(client.post("/ask", content=b'{"question": ', headers={"content-type": "application/json"}), 400,
           "bad_json")  # fmt: skip
    _error(client.post("/ask", content=b"question=hi"), 415, "not_json")
    body = _error(client.post("/ask", json={"question": QUESTION, "topk": 3}), 422, "invalid_field")
    assert body["param"] == "topk"
    assert _error(client.post("/ask", json={}), 422, "invalid_field")["param"] == "question"
    _error(client.post("/ask", json={"question": "   "}), 422, "invalid_field")
    _error(client.post("/ask", json={"question": "?!"}), 400, "bad_request")
    _error(client.post("/ask", json={"question": "?!", "stream": True}), 400, "bad_request")
    chat = {"messages": [{"role": "user", "content": "?!"}], "stream": True}
    _error(client.post("/v1/chat/completions", json=chat), 400, "bad_request")
    _error(client.post("/ask", json={"question": QUESTION, "context_tokens": 10}), 422, "invalid_field")
    _error(client.post("/search", json={"query": "x", "domain": "poetry"}), 422, "invalid_field")
    _error(client.get("/nowhere"), 404, "http_404")
    _error(client.get("/ask"), 405, "http_405")


def test_oversized_bodies_are_refused_with_413(client):
    big = {"question": "word " * 2000}
    _error(client.post("/ask", json=big), 413, "body_too_large")

    def chunks():
        # no Content-Length: the server must count as it reads
        for _ in range(10):
            yield b" " * 1000

    _error(client.post("/ask", content=chunks(), headers={"content-type": "application/json"}), 413,
           "body_too_large")  # fmt: skip
    # the server is fine afterwards
    assert client.post("/search", json={"query": "password"}).status_code == 200


def test_concurrent_asks_are_micro_batched_and_equal_sequential_answers(server, client):
    questions = [
        QUESTION,
        "When does the reset link expire?",
        "Which law governs the agreement?",
        "How do I turn on two-factor authentication?",
        "What interest do late payments carry?",
        "How long does the agreement run?",
    ] * 3
    sequential = {q: client.post("/ask", json={"question": q}).json() for q in set(questions)}
    before = client.get("/info").json()["server"]["batches"]

    async def ask_all() -> list[dict]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120) as ac:
            rs = await asyncio.gather(*(ac.post("/ask", json={"question": q}) for q in questions))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
        return [r.json() for r in rs]

    answers = asyncio.run(ask_all())
    for q, a in zip(questions, answers, strict=True):
        assert (a["answer"], a["citations"]) == (sequential[q]["answer"], sequential[q]["citations"])
        assert a["score"] == pytest.approx(sequential[q]["score"], rel=1e-3)
    after = client.get("/info").json()["server"]["batches"]
    assert after["items"] - before["items"] == len(questions)
    # concurrent reads shared passes: fewer batches than reads
    assert after["batches"] - before["batches"] < len(questions) and after["largest"] >= 2


def test_concurrent_searches_are_batched_and_equal_sequential_results(server, client):
    queries = [
        f"{w} {v}" for w in ("notice", "password", "retry", "fees") for v in ("term", "link", "error", "law")
    ]
    sequential = [client.post("/search", json={"query": q, "k": 3}).json()["passages"] for q in queries]
    before = client.get("/info").json()["server"]["search_batches"]

    async def search_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as ac:
            return await asyncio.gather(*(ac.post("/search", json={"query": q, "k": 3}) for q in queries))

    rs = asyncio.run(search_all())
    assert [r.json()["passages"] for r in rs] == sequential
    after = client.get("/info").json()["server"]["search_batches"]
    assert after["items"] - before["items"] == len(queries)
    assert after["batches"] - before["batches"] < len(queries)


def test_openai_client_chat_completion_and_stream(server):
    openai = pytest.importorskip("openai", reason="the openai client is in the dev extra")
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    assert [m.id for m in oa.models.list().data] == ["gdn2-rag"]
    messages = [
        {"role": "system", "content": "Answer from the documents."},
        {"role": "user", "content": "What is the governing law?"},
        {"role": "assistant", "content": "Which agreement?"},
        {"role": "user", "content": QUESTION},
    ]
    resp = oa.chat.completions.create(model="gdn2-rag", messages=messages)
    content = resp.choices[0].message.content
    assert resp.object == "chat.completion" and resp.choices[0].finish_reason == "stop"
    cites = resp.model_extra["citations"]
    assert cites and "Sources:\n[1] " in content and cites[0]["location"] in content
    assert resp.model_extra["rag"]["mode"] == "reader"

    stream = oa.chat.completions.create(model="gdn2-rag", messages=messages, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == content
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model_extra["citations"] == cites

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope" * 5, max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="no user message"):
        oa.chat.completions.create(model="gdn2-rag", messages=[{"role": "system", "content": "hi"}])


def test_openai_wire_format_without_the_client(client):
    """The exact SSE lines an OpenAI client parses: `data: {...}` chunks, then `data: [DONE]`."""
    body = {
        "model": "any",
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    }
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        blocks = resp.read().decode().strip().split("\n\n")
    assert blocks[-1] == "data: [DONE]"
    chunks = [json.loads(b.removeprefix("data: ")) for b in blocks[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1


def test_full_server_answers_429_with_retry_after(tmp_path):
    srv = TestServer(tmp_path, None, "--delay", "1.5", "--max-inflight", "2").start()
    try:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as ac:
                return await asyncio.gather(
                    *(ac.post("/ask", json={"question": f"notice {i}"}) for i in range(6))
                )

        rs = asyncio.run(burst())
        codes = sorted(r.status_code for r in rs)
        assert codes.count(200) == 2 and codes.count(429) == 4, codes
        refused = next(r for r in rs if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "overloaded"
        # once the work drains, the server takes requests again
        assert httpx.post(srv.url + "/ask", json={"question": "notice"}, timeout=60).status_code == 200
    finally:
        srv.stop()


def test_server_killed_mid_request_then_restarted(tmp_path):
    port = free_port()
    srv = TestServer(tmp_path, port, "--delay", "3").start()
    outcome: dict = {}

    def slow_request() -> None:
        try:
            outcome["resp"] = httpx.post(srv.url + "/search", json={"query": "notice"}, timeout=60)
        except httpx.TransportError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(1.0)
    srv.kill()
    t.join(30)
    assert not t.is_alive(), "the client hung on a dead server"
    # a clean transport error (connection closed), not a hang or a half response
    assert "error" in outcome and "resp" not in outcome, outcome
    with pytest.raises(httpx.ConnectError):
        httpx.post(srv.url + "/search", json={"query": "notice"}, timeout=5)
    srv = TestServer(tmp_path, port, "--delay", "0.2").start()
    try:
        resp = httpx.post(srv.url + "/search", json={"query": "notice"}, timeout=60)
        assert resp.status_code == 200 and resp.json()["passages"]
    finally:
        srv.stop()
