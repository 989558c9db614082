"""Reading a stream of chunks ahead of its consumer, so that receiving and storing (or
reading and sending) overlap instead of taking turns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator

_END = object()


async def read_ahead(chunks: AsyncIterable[bytes], depth: int = 2) -> AsyncIterator[bytes]:
    """Yield ``chunks`` while a task fetches up to ``depth`` more (memory: at most
    ``depth`` + 1 chunks). An error of the source is raised where it would have been;
    closing this generator stops the task and closes the source."""
    queue: asyncio.Queue = asyncio.Queue(depth)
    failure: list[BaseException] = []

    async def produce() -> None:
        source = aiter(chunks)
        try:
            async for chunk in source:
                await queue.put(chunk)
        except Exception as exc:
            failure.append(exc)
        finally:
            if hasattr(source, "aclose"):
                with contextlib.suppress(Exception):
                    await source.aclose()
        await queue.put(_END)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not _END:
            yield item
        if failure:
            raise failure[0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
