"""The floor under a worker: Faust agents that do nothing, on each of Faust's transports.

``python -m bench.null_agent`` runs one such worker; ``bench.throughput`` starts it with
the environment below, once per transport and mode, and reads the one line it prints:

- ``BENCH_TRANSPORT``: ``kafka`` (aiokafka, what shopstream uses), ``confluent``
  (confluent-kafka, which faust-streaming also ships) or ``rdkafka`` (that driver with its
  group join fixed, ``bench.rdkafka_driver``);
- ``BENCH_MODE``: ``take`` (read each record and drop it), ``forward`` (send each record
  on to another topic through Faust's producer, ``topic.send``) or ``forward_rdkafka``
  (through the workers' librdkafka producer, ``streams.producer``, each batch's sends
  awaited before the next batch, as shopstream's agents wait for theirs);
- ``BENCH_LOOP``: ``aio`` (asyncio, the default) or ``uvloop``; ``BENCH_MAX_POLL``
  (Faust's ``broker_max_poll_records``) and ``BENCH_BUFFER`` (``stream_buffer_maxsize``),
  Faust's defaults when unset;
- ``BENCH_TOPICS`` (comma-separated), ``BENCH_OUT``, ``BENCH_EVENTS``, ``BENCH_GROUP``,
  ``BENCH_BROKERS``, ``BENCH_PORT``.

It prints ``NULL_AGENT events=<n> seconds=<s>``, timed from the first record read to the
``n``-th, and exits.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

import faust

from bench.rdkafka_driver import register

register()
EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
MODE = os.environ.get("BENCH_MODE", "take")
app = faust.App(
    os.environ.get("BENCH_GROUP", "bench-null"),
    broker=f"{os.environ.get('BENCH_TRANSPORT', 'kafka')}://{os.environ.get('BENCH_BROKERS', '127.0.0.1:9092')}",
    value_serializer="raw", key_serializer="raw", consumer_auto_offset_reset="earliest",
    web_port=int(os.environ.get("BENCH_PORT", "6170")), web_host="127.0.0.1",
    broker_commit_interval=1.0, topic_disable_leader=True,
    datadir=tempfile.mkdtemp(prefix="bench-null-"),  # not the working directory
    **({"broker_max_poll_records": int(os.environ["BENCH_MAX_POLL"])} if os.environ.get("BENCH_MAX_POLL") else {}),
    **({"stream_buffer_maxsize": int(os.environ["BENCH_BUFFER"])} if os.environ.get("BENCH_BUFFER") else {}),
)
source = app.topic(*os.environ.get("BENCH_TOPICS", "bench-in").split(","), value_type=bytes, key_type=bytes)
out = app.topic(os.environ.get("BENCH_OUT", "bench-null-out"), value_type=bytes, key_type=bytes)
seen = {"n": 0, "first": 0.0}
rdkafka = []  # the librdkafka producer of forward_rdkafka, built by the first batch


def done() -> None:
    elapsed = time.perf_counter() - seen["first"]
    print(f"NULL_AGENT events={seen['n']} seconds={elapsed:.4f}", flush=True)
    os._exit(0)


@app.agent(source)
async def null(stream: faust.StreamT) -> None:
    async for records in stream.take_events(2000, within=0.1):
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        if MODE == "forward":
            for record in records:
                await out.send(key=record.message.key, value=record.message.value)
        elif MODE == "forward_rdkafka":
            if not rdkafka:
                from streams.producer import Producer

                rdkafka.append(Producer({"bootstrap.servers": os.environ.get("BENCH_BROKERS", "127.0.0.1:9092"),
                                         "linger.ms": 2}))
            name = out.get_topic_name()
            await asyncio.gather(*(rdkafka[0].send(name, record.message.value, record.message.key)
                                   for record in records))
        seen["n"] += len(records)
        if seen["n"] >= EVENTS:
            done()


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--loop", os.environ.get("BENCH_LOOP", "aio"), "worker",
                "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warn"), "--without-web"]
    app.main()
