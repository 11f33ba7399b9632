"""What runs in the server's process besides the server: a publisher and an "agent".

Each function runs in a thread of the server process, the way an agent
publishes from its own thread, so serialization and the publish call's cost
land where they would in production: on the server's CPU, under its GIL.
"""

from __future__ import annotations

import threading
import time
from array import array
from typing import Any, Protocol

from agentcast.bench.messages import agent_message, agent_padding, message
from agentcast.bench.peers import Peer
from agentcast.bench.token_script import agent_stream, envelope, stream_texts

MIN_NAP = 0.001  # seconds: agents_paced sleeps at least this long between its rounds
AGENT_STEP = 200  # squares summed per work unit: a few microseconds of pure Python


def burst(peer: Peer, count: int, size: int) -> float:
    """Publish ``count`` prebuilt messages back to back; return when the first was published."""
    messages = [message(seq, size) for seq in range(count)]
    started = time.monotonic()
    for obj in messages:
        peer.publish(obj)
    return started


def paced(peer: Peer, count: int, size: int, rate: float) -> float:
    """Publish ``count`` timestamped messages at ``rate`` per second; return the start time.

    The schedule is absolute (message i at start + i / rate), so a late
    message does not push back the ones after it.
    """
    started = time.monotonic()
    for seq in range(count):
        pause = started + seq / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        peer.publish(message(seq, size, sent_at=time.monotonic()))
    return started


def publish_costs(peer: Peer, count: int, size: int) -> list[float]:
    """Seconds each of ``count`` back-to-back ``publish`` calls took in this thread."""
    messages = [message(seq, size) for seq in range(count)]
    costs = []
    clock = time.perf_counter
    for obj in messages:
        before = clock()
        peer.publish(obj)
        costs.append(clock() - before)
    return costs


def agent_rate(seconds: float, stop: threading.Event | None = None) -> float:
    """Pure-Python work units per second for ``seconds``: a stand-in for an agent's steps."""
    units, started = 0, time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        sum(i * i for i in range(AGENT_STEP))
        units += 1
    return units / (time.monotonic() - started)


def headroom(peer: Peer, seconds: float, size: int, rate: float) -> tuple[float, int]:
    """The agent's work rate while another thread publishes at ``rate`` for ``seconds``.

    Returns the rate and how many messages were published.
    """
    count = max(1, round(rate * seconds))
    publisher = threading.Thread(target=paced, args=(peer, count, size, rate), name="publisher")
    publisher.start()
    busy = agent_rate(seconds)
    publisher.join()
    return busy, count


class PublishesTo(Protocol):
    """What ``agents_paced`` needs of a peer: a publish to one agent's watchers."""

    def publish_to(self, agent: str, obj: Any) -> None: ...


class Dropping:
    """A peer that drops every event: ``agents_paced`` to it is the bench's own cost."""

    def publish_to(self, agent: str, obj: Any) -> None:
        pass


def agents_publisher_cpu(
    _peer: Peer, agents: list[str], count: int, size: int, rate: float
) -> float:
    """CPU seconds the publisher thread spends on ``agents_paced``'s own work (building,
    stamping and pacing the events, its naps) when the server takes nothing: the part of
    the server process's CPU in the ``agents`` and ``tokens`` workloads that is the
    bench's, the same for every peer."""
    started = time.thread_time()
    agents_paced(Dropping(), agents, count, size, rate)
    return time.thread_time() - started


def agents_paced(peer: PublishesTo, agents: list[str], count: int, size: int, rate: float) -> float:
    """Each of ``agents`` publishes ``count`` stamped events of about ``size`` bytes at
    ``rate`` per second to its own watchers; return the start time.

    The agents are staggered evenly within each period (agent k's n-th event due at
    start + (n + k / len(agents)) / rate), as independent agents would be, rather than all
    publishing at the same instant. The schedule is absolute, as in ``paced``; the thread
    sleeps at least ``MIN_NAP`` and then publishes every event that fell due meanwhile, so
    thousands of events a second do not cost a sleep each. Each event is stamped when it is
    published, so the wait for its turn is not counted as latency.
    """
    padding = [agent_padding(agent, size) for agent in agents]
    step = 1.0 / (rate * len(agents))
    total = count * len(agents)
    published = 0
    started = time.monotonic()
    while published < total:
        due = min(total, int((time.monotonic() - started) / step) + 1)
        for j in range(published, due):
            n, k = divmod(j, len(agents))
            peer.publish_to(agents[k], agent_message(agents[k], n, padding[k], time.monotonic()))
        published = due
        pause = started + published * step - time.monotonic()
        if published < total and pause > 0:
            time.sleep(max(pause, MIN_NAP))
    return started


class PublishesEvents(Protocol):
    """What ``tokens_paced`` needs of a peer: a publish to one agent's watchers. A peer with
    streams of its own also has ``publish_event_to(agent, event)`` (it numbers the events)."""

    def publish_to(self, agent: str, obj: Any) -> None: ...


def tokens_paced(
    peer: PublishesEvents, agents: list[str], at_least: int, rate: float, seed: int
) -> dict[str, Any]:
    """Each agent streams ``token_script.agent_stream(agent, at_least, seed)`` at ``rate``
    events/s, staggered as in ``agents_paced``; returns when each event was handed over.

    A peer with ``publish_event_to`` gets the events (it adds channel and seq); any other
    gets each as the frame agentcast's native protocol would send (``envelope``, seq from 1
    per agent). The result: ``started`` and ``ended`` (monotonic), ``times`` (per agent,
    the hand-over time of its n-th event as an ``array("d")``'s bytes, index n = seq - 1)
    and ``texts`` (per agent, each message's whole text, as produced).
    """
    streams = [agent_stream(agent, at_least, seed) for agent in agents]
    publish_event = getattr(peer, "publish_event_to", None)
    schedule = sorted(
        ((n + k / len(agents)) / rate, k, n)
        for k, stream in enumerate(streams)
        for n in range(len(stream))
    )
    times = [array("d", bytes(8 * len(stream))) for stream in streams]
    started = time.monotonic()
    done = 0
    while done < len(schedule):
        now = time.monotonic() - started
        while done < len(schedule) and schedule[done][0] <= now:
            _, k, n = schedule[done]
            times[k][n] = time.monotonic()
            if publish_event is not None:
                publish_event(agents[k], streams[k][n])
            else:
                peer.publish_to(agents[k], envelope(streams[k][n], agents[k], n + 1))
            done += 1
        if done < len(schedule):
            time.sleep(max(started + schedule[done][0] - time.monotonic(), MIN_NAP))
    return {
        "started": started,
        "ended": time.monotonic(),
        "times": {agent: t.tobytes() for agent, t in zip(agents, times, strict=True)},
        "texts": {agent: stream_texts(s) for agent, s in zip(agents, streams, strict=True)},
    }
