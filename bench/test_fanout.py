"""Fan-out throughput of agentcast and websockets, side by side in one run.

A round publishes a burst of ``BURST`` 200-byte messages from this thread and
ends when the receivers have counted the burst's last frame on every
connection. Deliveries/s = clients x BURST / (time of that last frame - time
of the first publish). pytest-benchmark's own timing of a round also includes
the round-trip to the receiver process; ``extra_info`` holds the exact rate.
"""

from __future__ import annotations

import statistics
import time

import pytest

from agentcast.bench.messages import BURST, MESSAGE_BYTES, message
from agentcast.bench.peers import create
from results import SERVERS, FanoutRound

ROUNDS = 3
WARMUP_ROUNDS = 1  # the first burst also grows TCP windows and buffers: not reported
ROUND_TIMEOUT = 120.0  # per round; websockets at 1,000 clients needs a few seconds


@pytest.mark.timeout((WARMUP_ROUNDS + ROUNDS) * ROUND_TIMEOUT + 120)
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("clients", [100, 1000])
def test_fanout(benchmark, serve, fanout_rounds, server, clients):
    peer = create(server)
    fleet = serve(peer, clients)
    messages = [message(seq) for seq in range(BURST)]
    bursts: list[FanoutRound] = []
    expected = 0

    def burst() -> None:
        nonlocal expected
        expected += BURST
        started = time.monotonic()
        for obj in messages:
            peer.publish(obj)
        delivery = fleet.wait_for(expected, ROUND_TIMEOUT)
        assert delivery.complete, (
            f"{delivery.frames:,} of {clients * BURST:,} frames arrived in {ROUND_TIMEOUT:.0f} s"
        )
        elapsed = delivery.last_frame_at - started
        bursts.append(FanoutRound(clients * BURST / elapsed, delivery.cpu_seconds / elapsed))

    benchmark.pedantic(burst, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    rounds = fanout_rounds[server, clients] = bursts[-ROUNDS:]  # without the warm-up
    benchmark.extra_info.update(
        clients=clients,
        messages=BURST,
        message_bytes=MESSAGE_BYTES,
        deliveries_per_s=statistics.median(r.deliveries_per_s for r in rounds),
        deliveries_per_s_rounds=[round(r.deliveries_per_s) for r in rounds],
        receiver_cpu_share=[round(r.receiver_cpu_share, 3) for r in rounds],
    )
