"""The async library API: `await rag.aask(...)` / `await rag.asearch(...)` give what ask/search give,
without blocking the event loop (they run in a thread pool, the caller's if given)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor


def test_aask_and_asearch_match_the_sync_calls(fake_rag):
    question = "How many days of written notice are needed to terminate the Agreement?"
    sync_answer = fake_rag.ask(question)
    sync_hits = fake_rag.search("reset link", k=3)
    seen: list[list] = []
    threads: set[str] = set()

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        with ThreadPoolExecutor(2, thread_name_prefix="mine") as pool:
            answer = await fake_rag.aask(
                question,
                executor=pool,
                on_passages=lambda p: (seen.append(p), threads.add(threading.current_thread().name)),
            )
            hits = await fake_rag.asearch("reset link", k=3)
        tick.cancel()
        return answer, hits, ticks

    answer, hits, ticks = asyncio.run(main())
    assert (answer.text, [c.location for c in answer.citations]) == (
        sync_answer.text,
        [c.location for c in sync_answer.citations],
    )
    assert [p.chunk_id for p in hits] == [p.chunk_id for p in sync_hits]
    # the passages callback ran once, in the given pool, with the passages the answer holds
    assert [[p.chunk_id for p in s] for s in seen] == [[p.chunk_id for p in answer.passages]]
    assert all(name.startswith("mine") for name in threads)
    # the loop kept running while the ask worked
    assert ticks > 0
