"""What ``hub.publish`` costs the calling thread, with no clients and with 1,000.

The call is meant to be O(1): serialize once, append to a queue, wake the loop
at most once. With 1,000 clients the loop thread fans out *during* the round,
on the same CPU and under the same GIL, so that contention is part of the
measured cost: it is what an agent publishing from its own thread pays.
Between rounds the hub's queue is drained (``stats()["pending"] == 0``) and the
receivers have caught up, so every round starts from the same empty state.
"""

from __future__ import annotations

import pytest

from agentcast.bench.harness import wait_until
from agentcast.bench.messages import MESSAGE_BYTES, message
from agentcast.bench.peers.agentcast import AgentcastPeer

DRAIN_TIMEOUT = 60.0


@pytest.mark.parametrize("clients", [0, 1000])
def test_publish_cost(benchmark, serve, clients):
    peer = AgentcastPeer()
    fleet = serve(peer, clients)
    hub = peer.hub
    event = message(0)

    def drained(*_: object) -> None:
        wait_until(lambda: hub.stats()["pending"] == 0, DRAIN_TIMEOUT, "the publish queue to drain")
        if fleet is not None:
            delivery = fleet.wait_for(hub.stats()["published"], DRAIN_TIMEOUT)
            assert delivery.complete, "the receivers did not get every message"

    benchmark.pedantic(
        hub.publish, args=(event,), teardown=drained, rounds=20, iterations=1000, warmup_rounds=2
    )
    benchmark.extra_info.update(clients=clients, message_bytes=MESSAGE_BYTES)
    assert hub.stats()["dropped_clients"] == 0
