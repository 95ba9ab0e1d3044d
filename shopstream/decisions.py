"""The first fraud decision of every order id, kept in Redis so that it is the only one.

A shop may send an order again (a retry after a time-out, a replay), and a worker that
stops between sending scores and committing their orders reads them again. Either way
the order id must get the decision it got first: a second score, from newer features or
another model, could turn an order already allowed into a block. ``Decisions.decide``
keeps each new decision with ``SET NX GET`` (one round trip for a whole micro-batch) and
hands back, for an order decided before, the decision it got then. Decisions expire after
``scoring.decision_days``; Redis needs about 0.5 KB per order decided in that time.
"""

from __future__ import annotations

from shopstream.events import FraudScore


class Decisions:
    """First decisions by order id, in Redis under ``{prefix}{order id}``."""

    def __init__(self, client, prefix: str, ttl_s: int):
        self.client, self.prefix, self.ttl_s = client, prefix, ttl_s

    def decide(self, scores: list[FraudScore], origins: list[str]) -> list[tuple[FraudScore, bool]]:
        """For each of ``scores``: the decision to send and whether it repeats one sent for
        another record. A score is kept as its order's decision unless the order has one;
        then that one is sent. ``origins`` name the record each order came from
        (``topic:partition:offset``): the same record read again after a restart gets its
        decision again but is no repeat, and goes through every later step again (each
        is idempotent). Two scores of one order id in ``scores`` are kept in turn, so the
        second gets the first's."""
        pipe = self.client.pipeline(transaction=False)
        for score, origin in zip(scores, origins, strict=True):
            pipe.set(f"{self.prefix}{score.order_id}", f"{origin}\n{score.model_dump_json()}", ex=self.ttl_s,
                     nx=True, get=True)
        decided = []
        for score, before, origin in zip(scores, pipe.execute(), origins, strict=True):
            if before is None:
                decided.append((score, False))
                continue
            kept_origin, _, kept = before.decode().partition("\n")
            decided.append((FraudScore.model_validate_json(kept), kept_origin != origin))
        return decided
