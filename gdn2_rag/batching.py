"""Micro-batching: requests from many callers, one batched call on one worker, bounded memory.

The reader reads N contexts in one packed pass faster than N passes one after another (a fixed cost per
call, and the kernels' state pass runs the N sequences side by side). `MicroBatcher` gathers items that
arrive close together: the first item of a batch waits at most `max_wait_ms` for others, a batch holds
at most `max_batch` items, and while one batch runs on the worker thread the next one gathers. The queue
is bounded (`max_queue`): a full queue refuses at once with `Overloaded` (HTTP 429) instead of growing.

`BoundedExecutor` is the same promise one level up: the thread pool the server runs asks and searches
in takes at most `limit` of them at once and refuses the next with `Overloaded`.

Callers are coroutines (`await batcher.submit(item)`) or threads (`batcher.submit_threadsafe(item)`,
e.g. the pipeline running in a thread pool). `run_batch` runs on one dedicated thread, so a GPU sees one
batch at a time; it returns one result per item, or an exception instance for an item that failed alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# while a batch gathers, the queue is polled this often (race-free, and far below a read's duration)
POLL_S = 0.0005


class Overloaded(Exception):
    """The queue is full: the caller should retry later (the server answers 429 with Retry-After)."""


@dataclass(frozen=True)
class BatchSettings:
    """max_batch: items per batched call; max_wait_ms: how long a batch's first item waits for company;
    max_queue: items waiting (not yet in a running batch) before `submit` refuses."""

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 128

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")


@dataclass
class BatchStats:
    """Counters for /info and the benchmark: batches run, items read, items refused."""

    batches: int = 0
    items: int = 0
    refused: int = 0
    largest: int = 0


class MicroBatcher(Generic[T, R]):
    """Gathers submitted items into batches for `run_batch` (see the module docstring).

    Lifecycle: `await start()` inside the serving event loop, `await stop()` on shutdown.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R | BaseException]],
        settings: BatchSettings,
        cost: Callable[[T], int] | None = None,
        max_cost: int | None = None,
    ) -> None:
        """`cost` and `max_cost` cap a batch by size as well as by count (the reader: tokens, so a batch
        is one packed pass and its callers get their answers when that pass ends, not after several);
        an item costing more than `max_cost` goes alone."""
        self.run_batch = run_batch
        self.settings = settings
        self.cost = cost
        self.max_cost = max_cost
        self.stats = BatchStats()
        # an item taken from the queue that did not fit the last batch: it opens the next one
        self._held: tuple[T, asyncio.Future] | None = None
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-worker")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.settings.max_queue)
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop gathering; items still queued fail with RuntimeError (their requests end cleanly)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        waiting = [self._held] if self._held is not None else []
        self._held = None
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        self._worker.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    async def submit(self, item: T) -> R:
        """The result of `item` from its batch; Overloaded at once when the queue is full."""
        if self._queue is None or self._task is None:
            raise RuntimeError("the batcher is not running (call start() first)")
        fut = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut))
        except asyncio.QueueFull:
            self.stats.refused += 1
            raise Overloaded(
                f"the reader queue is full ({self.settings.max_queue} waiting); retry shortly"
            ) from None
        return await fut

    def submit_threadsafe(self, item: T, timeout: float | None = None) -> R:
        """`submit` from a thread other than the event loop's (blocks that thread until the result; on the
        loop's own thread it would deadlock, so coroutines await `submit`)."""
        if self._loop is None:
            raise RuntimeError("the batcher is not running (call start() first)")
        return asyncio.run_coroutine_threadsafe(self.submit(item), self._loop).result(timeout)

    async def _gather(self) -> list[tuple[T, asyncio.Future]]:
        """The next batch: the first waiting item, then what arrives within max_wait_ms (up to max_batch
        items and max_cost)."""
        assert self._queue is not None
        if self._held is not None:
            batch, self._held = [self._held], None
        else:
            batch = [await self._queue.get()]
        used = self.cost(batch[0][0]) if self.cost else 0
        deadline = asyncio.get_running_loop().time() + self.settings.max_wait_ms / 1000
        while len(batch) < self.settings.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                item = None
            if item is not None:
                if self.cost is not None and self.max_cost is not None:
                    c = self.cost(item[0])
                    if used + c > self.max_cost:
                        self._held = item
                        break
                    used += c
                batch.append(item)
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.sleep(min(left, POLL_S))
        # a caller that gave up (cancelled) is not read for
        return [(item, fut) for item, fut in batch if not fut.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            items = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self._worker, self.run_batch, items)
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # noqa: BLE001 - the batch fails, each caller gets the error
                results = [exc] * len(items)
            self.stats.batches += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)


class BoundedExecutor(Executor):
    """A thread pool that takes at most `limit` tasks at once (queued or running) and refuses more.

    `submit` raises Overloaded instead of queueing without bound; a slot is freed when its task ends,
    whether or not anyone still waits for it (a client that hung up does not free work that runs on).
    """

    def __init__(self, limit: int, thread_name_prefix: str = "rag") -> None:
        self.limit = limit
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=thread_name_prefix)
        self._slots = threading.BoundedSemaphore(limit)
        self._busy = 0
        self._count = threading.Lock()

    @property
    def inflight(self) -> int:
        return self._busy

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if not self._slots.acquire(blocking=False):
            raise Overloaded(f"the server is busy ({self.limit} requests in progress); retry shortly")
        with self._count:
            self._busy += 1
        try:
            fut = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        fut.add_done_callback(self._release)
        return fut

    def _release(self, _fut) -> None:
        with self._count:
            self._busy -= 1
        self._slots.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
