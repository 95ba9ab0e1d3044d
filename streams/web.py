"""The worker's web pages: ``/metrics``, ``/health``, and ``/debug/*`` when enabled."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from shopstream.settings import group_id, redact
from streams import metrics
from streams.app import app, models, preparing, settings, sinks_down
from streams.commits import consumer_state


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """Prometheus text exposition of the worker's metrics."""
    metrics.account()
    # aiohttp sets the charset itself and refuses one inside content_type.
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")


async def _probe(check, timeout: float = 2.0) -> str | None:
    """``None`` if the awaitable ``check`` completes within ``timeout`` seconds, else why not."""
    try:
        await asyncio.wait_for(check, timeout)
    except TimeoutError:
        return f"no answer within {timeout:.0f}s"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return repr(exc)
    return None


async def _kafka_probe() -> str | None:
    assigned = sorted(app.consumer.assignment())
    if not assigned:
        return "no partitions assigned"
    return await _probe(app.consumer.highwaters(assigned[0]))


def _redis_ping() -> None:
    with settings.redis.client(socket_timeout=1.5, socket_connect_timeout=1.5) as client:
        client.ping()


@app.page("/health")
async def health(web, request):
    """Liveness and readiness, checked now: Kafka answers for an assigned partition, Redis
    answers a ping, no sink is failing its writes (``report``)."""
    checks = {"kafka": await _kafka_probe(), "redis": await _probe(asyncio.to_thread(_redis_ping))}
    checks.update({f"sink:{sink}": error for sink, error in sinks_down.items()})
    body, status = report(checks, models, preparing, settings)
    body.update({"app_id": settings.app_id, "group": group_id(settings), "roles": list(settings.roles),
                 "assigned": sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())})
    return web.json(body, status=status)


def report(checks: dict[str, str | None], models: dict, preparing: dict, settings) -> tuple[dict, int]:
    """``/health``'s body and status from its checks (name: None or the error): 503 when
    any fails. A model registry that cannot be read or a model that cannot be loaded makes
    the worker ``degraded``, not unready: scoring goes on with the model in use (or the
    rules). Every text is ``redact``-ed: errors quote URIs, credentials and all.

    >>> body, status = report({"kafka": None}, {"fraud": {"version": "3", "error":
    ...     "MlflowException('https://ops:tok@mlflow/api refused')"}}, {}, None)
    >>> status, body["status"], body["models"]["fraud"]["error"]
    (200, 'degraded', "MlflowException('https://***@mlflow/api refused')")
    """
    ready = all(error is None for error in checks.values())
    degraded = any(model.get("error") for model in models.values())
    body = {"status": "unavailable" if not ready else "degraded" if degraded else "ok", "ready": ready,
            "checks": {name: error or "ok" for name, error in checks.items()},
            "models": models, "preparing": preparing}
    return _redacted(body, settings), 200 if ready else 503


def _redacted(value, settings):
    if isinstance(value, str):
        return redact(value, settings)
    if isinstance(value, dict):
        return {key: _redacted(item, settings) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, settings) for item in value]
    return value


def await_chain(task: asyncio.Task) -> list[str]:
    """Where ``task`` waits: every frame of its chain of awaits, outermost first
    (``Task.print_stack`` shows only the outermost coroutine of a suspended task)."""
    import gc
    import inspect

    frames, current = [], task.get_coro()
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(current, "cr_await", None) or getattr(current, "ag_await", None)
        if awaited is None and frame is None:
            # ``async for`` awaits the generator's ``asend`` object, which only the
            # garbage collector can see through.
            awaited = next((r for r in gc.get_referents(current)
                            if inspect.isasyncgen(r) or inspect.iscoroutine(r)), None)
        current = awaited
    return frames


def debug_page(path: str):
    """``app.page(path)`` when ``SHOPSTREAM_DEBUG_PAGES`` is on; otherwise the page is
    not served at all."""
    return app.page(path) if settings.debug_pages else (lambda handler: handler)


@debug_page("/debug/tasks")
async def debug_tasks(web, request):
    """The await chain of every asyncio task of the worker, for a worker that stops making
    progress without an error. Plain text, one block per task."""
    blocks = [f"{task.get_name()}\n  " + "\n  ".join(await_chain(task))
              for task in asyncio.all_tasks()]
    return web.bytes("\n\n".join(sorted(blocks)).encode(), content_type="text/plain")


@debug_page("/debug/consumer")
async def debug_consumer(web, request):
    """``consumer_state`` of this worker, as JSON."""
    return web.json(consumer_state(app.consumer))
