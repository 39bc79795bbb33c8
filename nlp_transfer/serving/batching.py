"""`MicroBatcher`: concurrent requests share one model call.

A forward pass over 32 texts costs far less than 32 passes over one, so requests that arrive close
together are run together. Each request is queued with its inputs and a future; one worker task
takes the first queued request, gathers more until the batch holds `max_batch_size` inputs or
`max_wait_ms` have passed since the first was queued, runs the model once on all of them in a
thread (the event loop keeps accepting requests meanwhile, so under load the next batch fills while
this one runs), and gives each request its own slice of the results.

    batcher = MicroBatcher(lambda texts: [len(t) for t in texts], max_batch_size=32, max_wait_ms=5)
    await batcher.start()
    await batcher.submit(["a text", "another"])      # -> [6, 7], computed with whatever else was queued
    await batcher.stop()

The batcher knows nothing of models or HTTP: `run_batch` maps a list of inputs to one result each.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nlp_transfer.errors import NLPTransferError

__all__ = ["MicroBatcher", "BatchError", "ShuttingDown"]

logger = logging.getLogger(__name__)

RECENT_BATCHES = 1000  # batch sizes kept for /health and the tests; old ones fall off


class BatchError(NLPTransferError):
    """The model failed on a batch; `cause` is what it raised."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class ShuttingDown(NLPTransferError):
    """The server stopped before this request's batch ran."""


@dataclass
class _Pending:
    inputs: list[Any]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers the inputs of concurrent `submit` calls into batches of at most `max_batch_size`
    (a single larger request runs alone) and runs `run_batch` once per batch, one batch at a time."""

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int = 32,
                 max_wait_ms: float = 5.0) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=RECENT_BATCHES)
        self.batches_run = 0
        # a deque plus an Event rather than an asyncio.Queue: waiting for "more, or the deadline" with
        # wait_for(queue.get()) can drop an item when the timeout and the get race (Python < 3.12)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        # one thread: batches run one after another (two forward passes would only fight over the cores)
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlp-transfer-model")
        self._worker = asyncio.create_task(self._work(), name="nlp-transfer-batcher")
        self._worker.add_done_callback(_log_if_crashed)

    async def stop(self) -> None:
        """Cancel the worker (a batch already in the model thread finishes first) and fail what is still queued."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ShuttingDown("The server is shutting down; send the request again "
                                                       "once it is back."))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, inputs: list[Any]) -> list[Any]:
        """The results of `run_batch` for `inputs`, in order, computed in a batch with other requests."""
        if not self.running:
            raise ShuttingDown("The batcher is not running (the server is starting or stopping); try again.")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(list(inputs), future))
        self._arrived.set()
        return await future

    # ----------------------------------------------------------------- the worker
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if batch:
                await self._run(loop, batch)

    async def _gather(self) -> list[_Pending]:
        """Wait for a first request, then take more until the batch is full or its deadline passes."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].queued_at + self.max_wait  # time already spent queued counts
        batch: list[_Pending] = []
        size = 0
        while True:
            while self._pending and size < self.max_batch_size:
                item = self._pending[0]
                if batch and size + len(item.inputs) > self.max_batch_size:
                    return batch  # it starts the next batch rather than overfilling this one
                self._pending.popleft()
                if item.future.done():  # its client went away while it was queued
                    continue
                batch.append(item)
                size += len(item.inputs)
            left = deadline - time.perf_counter()
            if size >= self.max_batch_size or left <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        inputs = [x for item in batch for x in item.inputs]
        self.batch_sizes.append(len(inputs))
        self.batches_run += 1
        try:
            results = await loop.run_in_executor(self._executor, self._checked, inputs)
        except Exception as error:  # noqa: BLE001 - every failure goes to the requests, none kills the worker
            if len(batch) > 1:
                # one bad request must not fail the others it happened to share a batch with
                logger.warning("A batch of %d requests failed (%s: %s); running them one by one.", len(batch),
                               type(error).__name__, error)
                for item in batch:
                    await self._run(loop, [item])
                return
            _resolve(batch[0], error=error)
            return
        start = 0
        for item in batch:
            _resolve(item, results=results[start : start + len(item.inputs)])
            start += len(item.inputs)

    def _checked(self, inputs: list[Any]) -> list[Any]:
        results = list(self.run_batch(inputs))
        if len(results) != len(inputs):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(inputs)} inputs")
        return results


def _log_if_crashed(worker: asyncio.Task) -> None:
    # failures of the model go to the requests; this is a bug in the batcher itself. /health turns 503.
    if not worker.cancelled() and worker.exception() is not None:
        logger.error("The batcher stopped: %r; requests are refused until the server restarts.", worker.exception(),
                     exc_info=worker.exception())


def _resolve(item: _Pending, *, results: list[Any] | None = None, error: BaseException | None = None) -> None:
    if item.future.done():  # cancelled: the client disconnected while its batch ran
        return
    if error is None:
        item.future.set_result(results)
    elif isinstance(error, NLPTransferError):  # the library's own words about the input: passed on as they are
        item.future.set_exception(error)
    else:
        logger.error("The model failed on a request: %s: %s", type(error).__name__, error, exc_info=error)
        item.future.set_exception(BatchError(f"The model failed on this request: {type(error).__name__}: {error}",
                                             error))
