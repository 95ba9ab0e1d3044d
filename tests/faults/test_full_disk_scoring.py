"""Fault 8: a full offline disk, or one out of inodes, never stops fraud scoring.

Seen failing before issue 32's fix: the scorer appended the rows it served to the offline
log with the retries of a sink that must not lose anything, so a full disk held every
score back, and after ``SHOPSTREAM_SINK_RETRY_S`` the worker exited with status 75.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Order, OrderItem
from shopstream.featurestore import offline_root
from tests.integration.conftest import read_all, start_worker, wait_until

pytestmark = pytest.mark.integration
ORDERS = 50


@pytest.mark.parametrize("full", ["bytes", "inodes"])
def test_scoring_goes_on_when_the_offline_disk_is_full(settings, tmp_path, full):
    settings = settings.model_copy(update={"roles": ("fraud",)})
    offline = offline_root(settings)
    offline.mkdir(parents=True)
    options = "size=256k" if full == "bytes" else "size=64m,nr_inodes=64"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(offline)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root; the full-disk variant cannot run here")
    log_file = tmp_path / "worker.log"
    try:
        process = start_worker(settings, log_file)
        try:
            _fill(offline, full)
            now = datetime.now(UTC)
            with ShopProducer(settings) as producer:
                for n in range(ORDERS):
                    producer.send(Order(order_id=f"full-{n}", user_id=f"u{n % 7}", amount=20.0 + n,
                                        items=[OrderItem(item_id="i", price=20.0 + n)],
                                        payment_fingerprint=f"p{n % 5}", ts=now))
            scores = read_all(settings, settings.topics.fraud_scores, expect=ORDERS, timeout=120)
            assert len({m.key() for m in scores}) == ORDERS
            wait_until(lambda: sum(s.value for s in workers.samples(
                settings.web_port, "shopstream_served_rows_dropped_total")) > 0,
                what="the dropped served rows to be counted")
            assert workers.ready(settings.web_port) and process.poll() is None
        finally:
            code = workers.stop(process)
            print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-4000:])
    finally:
        subprocess.run(["umount", "-l", str(offline)], capture_output=True)


def _fill(folder, what: str) -> None:
    """Leave no room in ``folder``'s file system: no byte, or no inode."""
    if what == "bytes":
        with (folder / "filler").open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                return
    for n in range(10_000):
        try:
            (folder / f"filler-{n}").touch()
        except OSError:
            return
