"""The measurements, each a function of (server, clients, settings) returning its rounds.

Each workload starts its own server process and receivers, so a backlog or a
grown heap from one never skews the next. A round that loses messages ends
the workload's rounds for that server and client count: its backlog would
spill into the next round. Each reports what it is doing (warm-up, round k/R)
to the ``progress.Progress`` it is given, and its session the rest (starting server,
connecting, draining, stopping); how that is shown is the sweep's business.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentcast.bench.chat import chat
from agentcast.bench.harness import CpuPlan
from agentcast.bench.progress import Prefixed, Progress
from agentcast.bench.session import Session
from agentcast.bench.tokens import tokens, tokens_shape

Round = dict[str, float]

DELIVERY_FLOOR = 10_000.0  # deliveries/s below which a burst is given up on
DRAIN_GRACE = 10.0  # seconds after the last steady-rate publish to deliver everything
SERVER_GRACE = 30.0  # seconds a server command may take beyond its own length
SETTLE = 0.5  # seconds for a server's memory to settle before reading it
IDLE_AGENT_SECONDS = 1.0  # at most, for each of the two readings of the agent's idle rate
LATENCY_SAMPLE_EVERY = 10  # Python receivers: every 10th connection (and the last) reads stamps
FRONTIER_LOADS = (0.25, 0.5, 1.0, 2.0)  # the publish rates along a frontier curve, times --rate
TOKEN_RATE = 50.0  # tokens/s an LLM streams, per agent
TOKEN_BYTES = 30  # a token delta's JSON: the smallest stamped event (agent_padding)
PUBLISHER_ALONE_SECONDS = 2.0  # at most: the bench's publisher timed with no server behind it


@dataclass(frozen=True)
class Settings:
    """What every workload is told (the command line's flags)."""

    messages: int = 2000
    size: int = 200
    rate: float = 1000.0
    duration: float = 5.0
    rounds: int = 3
    receiver: str = "compiled"  # receivers.RECEIVERS
    crowd: int = 100  # agents: watchers of each many-watcher agent
    watchers: int = 100  # tokens, tokens-v1: watchers per agent
    token_rate: float = 50.0  # tokens: events/s each agent streams
    laggards: float = 0.1  # tokens: the share of each agent's watchers that lag
    laggard_pace: float = 0.25  # tokens: a laggard reads this share of its stream's bytes/s


def _burst_timeout(deliveries: int) -> float:
    return SERVER_GRACE + deliveries / DELIVERY_FLOOR


def _repeat(settings: Settings, measure: Callable[[], Round], progress: Progress) -> list[Round]:
    rounds: list[Round] = []
    for number in range(1, settings.rounds + 1):
        progress.phase(f"round {number}/{settings.rounds}")
        rounds.append(measure())
        if rounds[-1].get("lost"):
            break
    return rounds


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def burst(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """``messages`` published back to back; time from the first publish to the last frame.

    Also the server process's CPU time per delivery (publisher thread
    included), from just before the burst until every frame arrived: when the
    receivers set the pace, deliveries/s stops ranking the servers, but what
    each delivery cost the server's core still does.

    A warm-up burst of the rounds' size first grows TCP windows and buffers to what a round
    needs. After a quarter-size one, the first round at 1,000 clients ran at half the
    deliveries/s of the next two, with the receivers spending 2-3 times the CPU per frame,
    and that round alone set the reported receiver CPU (the worst round's).
    """
    with Session(peer, plan, progress, settings.receiver) as session:
        session.connect(clients)

        def round_of(count: int) -> Round:
            timeout = _burst_timeout(clients * count)
            cpu_before = session.server.call("cpu_seconds", timeout=SERVER_GRACE)
            started = session.server.call("burst", count, settings.size, timeout=timeout)
            session.published(count)
            delivery, lost = session.drain(timeout)
            cpu = session.server.call("cpu_seconds", timeout=SERVER_GRACE) - cpu_before
            elapsed = max(delivery.last_frame_at - started, 1e-9)
            return {
                "deliveries_per_s": delivery.frames / elapsed,
                "mb_per_s": delivery.bytes / elapsed / 1e6,
                "server_ns": cpu / max(delivery.frames, 1) * 1e9,
                "lost": lost,
                "lost_share": lost / max(clients * count, 1),
                "receiver_cpu": delivery.cpu_seconds / elapsed,
                "receiver_frames_per_cpu_s": delivery.frames / max(delivery.cpu_seconds, 1e-9),
            }

        progress.phase("warm-up")
        if round_of(settings.messages)["lost"]:
            raise RuntimeError("the warm-up burst was not delivered in full")
        return _repeat(settings, lambda: round_of(settings.messages), progress)


def _paced_outcome(session: Session, count: int, started: float, settings: Settings) -> Round:
    """After ``count`` paced messages sent from ``started``: wait for them, then the
    publish-to-receive latencies (p50, p99, p99.9, max and the worst connection's p99, in
    ms, and how many deliveries were timed), losses and receiver CPU."""
    session.published(count)
    delivery, lost = session.drain(DRAIN_GRACE + settings.duration)
    elapsed = max(delivery.last_frame_at - started, settings.duration)
    latencies = session.latencies()
    histogram = latencies.histogram
    return {
        "deliveries": delivery.frames,
        "deliveries_per_s": delivery.frames / elapsed,
        "elapsed_s": elapsed,
        "p50_ms": histogram.percentile(0.5) / 1e3,
        "p99_ms": histogram.percentile(0.99) / 1e3,
        "p999_ms": histogram.percentile(0.999) / 1e3,
        "max_ms": histogram.percentile(1.0) / 1e3,
        "worst_client_p99_ms": latencies.worst_client_p99_us / 1e3,
        "latency_samples": histogram.total,
        "lost": lost,
        "lost_share": lost / max(session.clients * count, 1),
        "receiver_cpu": delivery.cpu_seconds / elapsed,
    }


def latency(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """``rate`` timestamped messages/s for ``duration``; publish-to-receive latency of every
    delivery (compiled receivers) or of a sample of the connections (Python receivers)."""
    count = max(1, round(settings.rate * settings.duration))
    with Session(peer, plan, progress, settings.receiver) as session:
        session.connect(clients, sample_every=LATENCY_SAMPLE_EVERY)

        def one_round() -> Round:
            started = session.server.call(
                "paced",
                count,
                settings.size,
                settings.rate,
                timeout=settings.duration + SERVER_GRACE,
            )
            return _paced_outcome(session, count, started, settings)

        return _repeat(settings, one_round, progress)


def publish(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """µs per ``publish()`` call in the publisher thread: first with no clients, then ``clients``.

    Each phase starts with a warm-up run that is not reported.

    With clients connected, the server fans out during the calls, on the same
    CPU and GIL: that contention is part of what an agent's thread pays.
    """

    def costs(session: Session) -> tuple[float, float]:
        ordered = sorted(
            session.server.call(
                "publish_costs", settings.messages, settings.size, timeout=SERVER_GRACE
            )
        )
        return _percentile(ordered, 0.5) * 1e6, _percentile(ordered, 0.99) * 1e6

    with Session(peer, plan, progress, settings.receiver) as session:
        progress.phase("warm-up")
        costs(session)  # the first calls also grow the process's heap and caches
        progress.phase("rounds without clients")
        idle = iter([costs(session) for _ in range(settings.rounds)])
        session.connect(clients)
        timeout = _burst_timeout(clients * settings.messages)
        progress.phase("warm-up")
        costs(session)  # with clients: TCP windows, buffers
        session.published(settings.messages)
        session.drain(timeout)

        def one_round() -> Round:
            idle_median, idle_p99 = next(idle)
            median, p99 = costs(session)
            session.published(settings.messages)
            _, lost = session.drain(timeout)
            return {
                "idle_median_us": idle_median,
                "idle_p99_us": idle_p99,
                "median_us": median,
                "p99_us": p99,
                "lost": lost,
            }

        return _repeat(settings, one_round, progress)


def headroom_share(busy: float, idle_before: float, idle_after: float) -> float:
    """The agent's work rate while the messages fan out over its idle rate, taking the faster
    of the idle readings before and after: work elsewhere on the core (another process, the
    drain of a backlog) can only slow a reading, so the faster one is the nearer to the
    agent's idle rate, and one slowed reading no longer puts headroom above 100 %."""
    return busy / max(idle_before, idle_after)


def headroom(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """An agent thread's work rate while ``rate`` messages/s fan out, over its idle rate.

    All rates are taken in the server's process with the clients connected: the idle
    one before the busy window and again after its messages are delivered, each for at
    most ``IDLE_AGENT_SECONDS``, and the faster of the two kept (``headroom_share``). The
    latency of the same messages is sampled as in ``latency``: what the agent's work costs
    the clients, and what the fan-out costs the agent, in one measurement.
    """
    idle_seconds = min(settings.duration, IDLE_AGENT_SECONDS)
    with Session(peer, plan, progress, settings.receiver) as session:
        session.connect(clients, sample_every=LATENCY_SAMPLE_EVERY, nap=False)

        def idle_rate() -> float:
            return float(session.server.call("agent_rate", idle_seconds, timeout=SERVER_GRACE))

        def one_round() -> Round:
            idle_before = idle_rate()
            started = time.monotonic()
            busy, count = session.server.call(
                "headroom",
                settings.duration,
                settings.size,
                settings.rate,
                timeout=settings.duration + SERVER_GRACE,
            )
            outcome = _paced_outcome(session, count, started, settings)
            return {"headroom": headroom_share(busy, idle_before, idle_rate()), **outcome}

        return _repeat(settings, one_round, progress)


def frontier(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """The latency/headroom trade: ``headroom`` at each of ``FRONTIER_LOADS`` times ``rate``.

    Each publish rate is a point of the server's curve (p99 against headroom, drawn by
    ``plot``), its rounds tagged with ``rate``; a server setting such as agentcast's
    ``flush_interval`` is another curve. Each rate gets a fresh server, so a rate a
    server falls behind at leaves the others' points alone.
    """
    points: list[Round] = []
    for load in FRONTIER_LOADS:
        at_rate = dataclasses.replace(settings, rate=settings.rate * load)
        rounds = headroom(
            peer, clients, at_rate, plan, Prefixed(progress, f"{at_rate.rate:g} msg/s")
        )
        points += [{"rate": at_rate.rate, **point} for point in rounds]
    return points


def memory(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """The server process's RSS growth per connected, idle client; a fresh server each round."""

    def one_round() -> Round:
        with Session(peer, plan, progress, settings.receiver) as session:
            time.sleep(SETTLE)
            before = session.server.rss_bytes()
            session.connect(clients)
            time.sleep(SETTLE)
            after = session.server.rss_bytes()
        return {"kib_per_client": (after - before) / clients / 1024, "idle_rss_mb": before / 1e6}

    return _repeat(settings, one_round, progress)


def agents_shape(clients: int, crowd: int) -> list[int]:
    """Watchers per agent for ``clients``: half of them watch an agent of their own, the
    other half agents of ``crowd`` watchers each (2,000 clients: 1,000 agents with 1
    watcher and 10 with 100; the last crowd takes the remainder, so sizes sum up)."""
    singles = clients // 2
    crowds = clients - singles
    groups = max(1, crowds // crowd) if crowds else 0
    return [1] * singles + [crowd] * (groups - 1) + [crowds - crowd * (groups - 1)] * bool(groups)


def _many_agents(
    peer: str,
    shape: list[int],
    per_agent_rate: float,
    size: int,
    settings: Settings,
    plan: CpuPlan,
    progress: Progress,
) -> list[Round]:
    """Agent k (``agent-k``, watched by ``shape[k]`` clients) publishes ``per_agent_rate``
    stamped events/s of about ``size`` bytes for ``duration`` to its own watchers: the
    latency of every delivery, deliveries/s, and the server's CPU per delivery and share.

    The publisher thread runs in the server process and paces every event, so its own CPU
    (``publisher_ns`` per event, timed first with nothing behind it, the same code for
    every peer) is taken out of ``server_ns`` and ``server_event_ns``; ``process_ns`` per
    delivery and ``server_cpu`` are the whole process's, the bench's publisher included."""
    agents = [f"agent-{k}" for k in range(len(shape))]
    count = max(1, round(per_agent_rate * settings.duration))
    with Session(peer, plan, progress, settings.receiver) as session:
        watched = [agent for agent, n in zip(agents, shape, strict=True) for _ in range(n)]
        session.server.call("route", watched, timeout=SERVER_GRACE)
        session.connect(len(watched), sample_every=LATENCY_SAMPLE_EVERY)
        progress.phase("publisher alone")
        alone = max(1, round(per_agent_rate * min(settings.duration, PUBLISHER_ALONE_SECONDS)))
        publisher_cpu = session.server.call(
            "agents_publisher_cpu",
            agents,
            alone,
            size,
            per_agent_rate,
            timeout=settings.duration * 2 + SERVER_GRACE,
        ) / (alone * len(agents))  # seconds per event

        def one_round() -> Round:
            cpu_before = session.server.call("cpu_seconds", timeout=SERVER_GRACE)
            started = session.server.call(
                "agents_paced",
                agents,
                count,
                size,
                per_agent_rate,
                timeout=settings.duration * 2 + SERVER_GRACE,
            )
            outcome = _paced_outcome(session, count, started, settings)
            cpu = session.server.call("cpu_seconds", timeout=SERVER_GRACE) - cpu_before
            events = count * len(agents)
            server = max(cpu - publisher_cpu * events, 0.0)
            deliveries = max(outcome["deliveries"], 1)
            return {
                **outcome,
                "server_ns": server / deliveries * 1e9,
                "server_event_ns": server / events * 1e9,
                "publisher_ns": publisher_cpu * 1e9,
                "process_ns": cpu / deliveries * 1e9,
                "server_cpu": cpu / outcome["elapsed_s"],
                "agents": len(agents),
            }

        return _repeat(settings, one_round, progress)


def agents(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """The chat shape (``agents_shape``): ``rate`` events/s of ``size`` bytes in all, spread
    evenly over the agents, each published to its own agent's watchers only."""
    shape = agents_shape(clients, settings.crowd)
    return _many_agents(
        peer, shape, settings.rate / len(shape), settings.size, settings, plan, progress
    )


def tokens_v1(
    peer: str, clients: int, settings: Settings, plan: CpuPlan, progress: Progress
) -> list[Round]:
    """Stamped token-sized events (``TOKEN_BYTES``) at ``TOKEN_RATE``/s from each of
    ``clients // watchers`` agents to its ``watchers`` clients, counted by the compiled
    receivers (to 10,000 connections and more); ``tokens`` is the stream workload."""
    shape = tokens_shape(clients, settings.watchers)
    return _many_agents(peer, shape, TOKEN_RATE, TOKEN_BYTES, settings, plan, progress)


Workload = Callable[[str, int, Settings, CpuPlan, Progress], list[Round]]

WORKLOADS: dict[str, Workload] = {
    "burst": burst,
    "latency": latency,
    "publish": publish,
    "headroom": headroom,
    "frontier": frontier,
    "chat": chat,
    "memory": memory,
    "agents": agents,
    "tokens": tokens,
    "tokens-v1": tokens_v1,
}
