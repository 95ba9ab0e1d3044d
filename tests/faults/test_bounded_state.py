"""Fault 4: one entity flooded with distinct values keeps a state of bounded size.

Seen failing before issue 32's fix: a session's cart kept every item ever added since its
last order, and every update summed all of them, so 45,000 adds to one session took about
9 minutes of CPU, and near 64,000 the state outgrew a changelog record and the worker
exited in a loop. A user's devices and IPs in 24 hours grew the same way. The flood here
(100,000 distinct adds, 100,000 distinct devices and IPs) timed out before the fix.
"""

from __future__ import annotations

from scorers.routing import Update
from scorers.states import LIMITS, apply, new_state
from streams.codecs import decode_state, encode_state

FLOOD = 100_000
T0 = 1.7e9


def flood(kind: str, op: str, data) -> tuple[list[int], object]:
    """Apply ``FLOOD`` updates of ``op`` with distinct ``data(n)`` to one entity; return
    the size of its changelog record every 10,000 updates, and the state."""
    state = new_state(kind, f"flooded-{kind}", 300.0)
    sizes = []
    for n in range(FLOOD):
        rows = apply(state, Update(kind, f"flooded-{kind}", op, T0 + n / 100, "shop.carts:0", (n, 0), data(n)))
        assert rows, f"update {n} changed no row"
        if n % 10_000 == 9_999:
            sizes.append(len(encode_state(kind, state, 0.0)))
    return sizes, state


def test_100000_distinct_adds_to_one_session_keep_its_state_bounded():
    sizes, session = flood("session", "add", lambda n: (f"item-{n:06d}",))
    assert len(session.cart) == LIMITS.cart_items
    assert max(sizes) <= 1.1 * min(sizes) and max(sizes) <= 64 * 1024, sizes  # stationary, and small
    again = decode_state(encode_state("session", session, 0.0))
    assert again.cart_items() == session.cart_items()
    assert session.cart_items()[-1] == f"item-{FLOOD - 1:06d}"  # the newest are the ones kept


def test_100000_distinct_devices_and_ips_of_one_user_keep_its_state_bounded():
    sizes, user = flood("user", "order", lambda n: (10.0, f"device-{n:06d}", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"))
    assert len(user.devices.to_data()[1]) == len(user.ips.to_data()[1]) == LIMITS.distinct
    assert user.devices.count("24h") == LIMITS.distinct  # saturates at the limit
    assert max(sizes) <= 1.1 * min(sizes) and max(sizes) <= 256 * 1024, sizes
