"""The worker's debugging aid: where a stuck task waits."""

from __future__ import annotations

import asyncio

from streams.app import await_chain


async def _innermost(event: asyncio.Event) -> None:
    await event.wait()


async def _middle(event: asyncio.Event) -> None:
    await _innermost(event)


async def _generator(event: asyncio.Event):
    await _middle(event)
    yield 1


async def _outer(event: asyncio.Event) -> None:
    async for _ in _generator(event):
        pass


def test_await_chain_follows_coroutines_and_async_generators_to_the_innermost_wait():
    async def main() -> list[str]:
        event = asyncio.Event()
        task = asyncio.create_task(_outer(event))
        await asyncio.sleep(0)  # let it run up to its wait
        chain = await_chain(task)
        event.set()
        await task
        return chain

    chain = asyncio.run(main())
    names = [line.rsplit(" in ", 1)[1] for line in chain]
    assert names[:4] == ["_outer", "_generator", "_middle", "_innermost"]
    assert all("test_app.py:" in line for line in chain[:4])
