"""A worker reads each click and cart change once, whatever roles it has (orders, about
one event in seventy, are still read by each role's agent): with both the
``features`` and ``recs`` roles one agent does the work of both (``streams.recs.register``).
Each role set is registered in a process of its own, as ``streams.worker`` does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SUBSCRIBERS = """
import json, sys
from streams.worker import register
from streams.app import app, settings
register(tuple(sys.argv[1].split(",")))
print(json.dumps({topic: sorted(agent.name.rsplit(".", 1)[-1] for agent in app.agents.values()
                                if topic in agent.channel.topics)
                  for topic in settings.topics.inputs().values()}))
"""


def subscribers(roles: str) -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", SUBSCRIBERS, roles], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("roles", ["features,fraud,recs,drift", "features,recs", "features", "recs"])
def test_clicks_and_cart_changes_are_read_by_one_agent(roles):
    read_by = subscribers(roles)
    one = ["session_agent"] if "recs" in roles else ["click_agent"]
    assert next(agents for topic, agents in read_by.items() if topic.endswith("clicks")) == one, read_by
    assert next(agents for topic, agents in read_by.items() if topic.endswith("carts")) == (
        one if "recs" in roles else ["cart_agent"]), read_by
