"""The compiled receivers against the Python ones they replace: same frames and bytes on the
same stream, every send time read, and histograms that merge exactly.

Real processes and sockets on 127.0.0.1: an agentcast server publishing, both kinds of
receivers connected to it at once. Timings are never asserted (the machine is shared).
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from collections.abc import Callable
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from agentcast import Broadcaster
from agentcast._receiver import Receiver
from agentcast.bench.frames import FrameCounter
from agentcast.bench.harness import plan_cpus
from agentcast.bench.histogram import CLIENT_BITS, Histogram, micros
from agentcast.bench.progress import Lines
from agentcast.bench.receivers import ReceiverFleet, sampled_connections
from agentcast.bench.workloads import LATENCY_SAMPLE_EVERY, Settings, latency
from reference import frame

# Every header length: 7-bit (< 126), 16-bit (126 .. 65535) and 64-bit (> 65535), and a
# frame larger than a receiver's read buffer (256 KiB), which no read can hold whole.
SIZES = [2, 125, 126, 200, 4000, 65535, 65536, 70000, 300_000]
TIMEOUT = 60


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker() -> None:
    """The first spawned receiver starts multiprocessing's resource tracker, whose pipe
    stays open for the life of the process: start it before any test counts fds."""
    resource_tracker.ensure_running()


def payload(size: int, sent_at: float | None = None) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least 2), stamped first with ``sent_at``."""
    head = b"{" if sent_at is None else b'{"t":' + repr(sent_at).encode() + b","
    if sent_at is None and size == 2:
        return b"{}"
    room = size - len(head) - len(b'"p":""}')
    assert room >= 0, size
    return head + b'"p":"' + b"x" * room + b'"}'


def stamped_stream() -> tuple[bytes, list[float]]:
    """Frames of every size, most stamped 0.25 ms .. 3 s before t=1000 s, some not."""
    rng = random.Random(16)
    small = [size for size in SIZES if size <= 4000]
    sizes = [small[seq % len(small)] for seq in range(196)] + SIZES[len(small) :]
    rng.shuffle(sizes)
    chunks, latencies = [], []
    for seq, size in enumerate(sizes):
        if size < 40 or seq % 7 == 0:
            chunks.append(frame(payload(size)))
            continue
        ago = rng.choice([0.0005, 0.0012, 0.01, 0.3, 2.0]) * rng.uniform(0.5, 1.5)
        chunks.append(frame(payload(size, 1000.0 - ago)))
        latencies.append(ago)
    return b"".join(chunks), latencies


@pytest.mark.parametrize("cut", [1, 7, 4096, 1 << 20])
def test_the_compiled_walker_counts_and_stamps_frames_cut_anywhere(cut: int) -> None:
    stream, latencies = stamped_stream()
    receiver, reference = Receiver(), FrameCounter()
    index = receiver.add()
    for start in range(0, len(stream), cut):
        chunk = stream[start : start + cut]
        receiver.feed(index, chunk, 1000.0)
        reference.feed(chunk, len(chunk))
    assert receiver.frames == reference.frames == 200 and reference.has(200)
    assert receiver.bytes == len(stream)
    counts, worst_p99 = receiver.take_latencies()
    expected, own = Histogram(), Histogram(CLIENT_BITS)
    for ago in latencies:
        expected.record(micros(ago))
        own.record(micros(ago))
    assert Histogram(counts=counts).counts == expected.counts
    assert worst_p99 == own.percentile(0.99)
    assert Histogram(counts=receiver.take_latencies()[0]).total == 0  # taken: starts again


def test_the_worst_client_is_the_connection_with_the_highest_p99() -> None:
    receiver = Receiver()
    fast, slow = receiver.add(), receiver.add()
    for seq in range(200):  # the slow one: 3 of its frames 0.5 s late (1.5 %), the rest 1 ms
        receiver.feed(fast, frame(payload(200, 1000.0 - 0.002)), 1000.0)
        late = 0.5 if seq % 100 == 0 or seq == 1 else 0.001
        receiver.feed(slow, frame(payload(200, 1000.0 - late)), 1000.0)
    counts, worst_p99 = receiver.take_latencies()
    run = Histogram(counts=counts)
    assert run.total == 400 and run.percentile(0.99) <= 2_000 * 1.01  # the run's p99: 2 ms
    assert 500_000 <= worst_p99 <= 500_000 * 1.0625  # the slow client's p99: 0.5 s


def test_histograms_merge_exactly_and_read_percentiles_within_one_percent() -> None:
    rng = random.Random(3)
    values = [int(rng.lognormvariate(7, 2)) for _ in range(20_000)]
    whole, first, second = Histogram(), Histogram(), Histogram()
    for i, value in enumerate(values):
        whole.record(value)
        (first if i % 3 else second).record(value)
    first.merge(second)
    assert first.counts == whole.counts and first.total == len(values)
    ordered = sorted(min(v, 100_000_000) for v in values)
    for share in (0.5, 0.99, 0.999, 1.0):
        exact = ordered[min(len(ordered) - 1, int(share * len(ordered)))]
        assert exact <= whole.percentile(share) <= exact * 1.01 + 1, share
    assert math.isnan(Histogram().percentile(0.5))
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(Histogram(CLIENT_BITS))


def mixed_burst() -> list[bytes]:
    return [payload(SIZES[seq % len(SIZES)]) for seq in range(3 * len(SIZES))]


@pytest.mark.parametrize("clients", [1, 30])
def test_both_receivers_count_the_same_frames_and_bytes_from_a_real_server(
    hub_factory: Callable[..., Broadcaster], clients: int
) -> None:
    hub = hub_factory(ping_interval=0)
    fleets = {
        kind: ReceiverFleet(hub.port, clients, cpus=(None,), receiver=kind).start()
        for kind in ("python", "compiled")
    }
    try:
        messages = mixed_burst()
        for message in messages:
            hub.publish_json(message)
        expected_bytes = clients * sum(len(frame(m)) for m in messages)
        for kind, fleet in fleets.items():
            delivery = fleet.wait_for(len(messages), timeout=60)
            assert delivery.complete, kind
            assert (delivery.frames, delivery.bytes) == (clients * len(messages), expected_bytes)
    finally:
        for fleet in fleets.values():
            fleet.stop()


@pytest.mark.parametrize("receiver", ["compiled", "python"])
def test_frames_that_never_come_end_the_wait_at_its_deadline_as_incomplete(
    hub_factory: Callable[..., Broadcaster], receiver: str
) -> None:
    hub = hub_factory(ping_interval=0)
    fleet = ReceiverFleet(hub.port, 4, cpus=(None,), receiver=receiver).start()
    try:
        for message in mixed_burst()[:5]:
            hub.publish_json(message)
        assert fleet.wait_for(5, timeout=60).complete
        delivery = fleet.wait_for(6, timeout=0.2)  # one more than was published
        assert not delivery.complete and delivery.frames == 0
        hub.publish_json(b"{}")
        again = fleet.wait_for(6, timeout=60)
        assert again.complete and again.frames == 4
    finally:
        fleet.stop()


@pytest.mark.parametrize(
    ("server", "receiver"),
    [("agentcast", "compiled"), ("agentcast", "python"), ("agentcast:tls", "compiled")],
)
def test_latency_is_timed_on_every_delivery_by_the_compiled_receivers(
    server: str, receiver: str
) -> None:
    clients, settings = 23, Settings(size=300, rate=200, duration=0.5, rounds=1, receiver=receiver)
    count = round(settings.rate * settings.duration)
    progress = Lines(io.StringIO()).cell(server)
    (result,) = latency(server, clients, settings, plan_cpus(), progress)
    timed = (
        clients
        if receiver == "compiled"
        else sum(sampled_connections(clients, LATENCY_SAMPLE_EVERY))
    )
    assert result["lost"] == 0
    assert result["latency_samples"] == count * timed
    assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"] <= result["max_ms"]
    assert 0 <= result["worst_client_p99_ms"] <= result["max_ms"] * 1.07
    json.dumps(result)  # the round goes into --json as it is


def test_the_receiver_flag_is_recorded_and_checked(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    command = [sys.executable, "-m", "agentcast", "bench", "--clients", "3", "--rounds", "1"]
    ran = subprocess.run(
        [*command, "--servers", "agentcast", "--messages", "50", "--receiver", "python",
         "--json", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    document = json.loads(out.read_text())
    assert document["settings"]["receiver"] == "python"
    assert document["results"][0]["summary"]["lost"] == 0
    refused = subprocess.run(
        [*command, "--receiver", "rust"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert refused.returncode == 2 and "--receiver: invalid choice: 'rust'" in refused.stderr
