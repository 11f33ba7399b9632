"""One server process and its receivers, and how many frames each client is owed."""

from __future__ import annotations

from types import TracebackType

from agentcast.bench.harness import CpuPlan, wait_until
from agentcast.bench.progress import Progress, tally
from agentcast.bench.receivers import Delivery, Latencies, ReceiverFleet
from agentcast.bench.server_process import ServerProcess

CONNECT_TIMEOUT = 120.0


class Session:
    """``with Session(peer, plan) as session``: the server runs, then ``connect`` adds clients.

    Every client gets every message, so "owed" is one number: the messages
    published since the clients connected. ``drain`` waits until each client
    has them all, or the deadline, and counts what is missing as lost.
    Receivers are stopped before the server, so the server never waits on
    clients to close. Each step is reported to ``progress`` as a phase.
    """

    def __init__(
        self, peer: str, plan: CpuPlan, progress: Progress, receiver: str = "compiled"
    ) -> None:
        self.peer = peer
        self.progress = progress
        self.plan = plan
        self.receiver = receiver  # which receivers (see receivers.RECEIVERS)
        self.server = ServerProcess(peer, plan.server)
        self.fleet: ReceiverFleet | None = None
        self.clients = 0
        self.owed = 0  # messages published to every connected client
        self.received = 0  # frames counted over all clients

    def __enter__(self) -> Session:
        self.progress.phase("starting server")
        self.server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.phase("stopping")
        if self.fleet is not None:
            self.fleet.stop()
        self.server.stop()

    def connect(self, clients: int, *, sample_every: int = 0, nap: bool = True) -> None:
        """Open ``clients`` receivers; return once the server counts every one."""
        connected = tally(self.progress, "connecting", clients)
        self.fleet = ReceiverFleet(
            self.server.port,
            clients,
            processes=len(self.plan.receivers),
            cpus=self.plan.receivers,
            sample_every=sample_every,
            nap=nap,
            ca_pem=self.server.ca_pem,
            receiver=self.receiver,
        ).start(connected)
        self.clients = clients
        wait_until(
            lambda: self.server.client_count == clients,
            CONNECT_TIMEOUT,
            f"{self.peer} to register {clients} clients",
        )

    def published(self, count: int) -> None:
        self.owed += count

    def drain(self, timeout: float) -> tuple[Delivery, int]:
        """Wait until every client has every message published so far; also return how many
        deliveries are still missing at the deadline."""
        assert self.fleet is not None, "connect() first"
        self.progress.phase("draining")
        delivery = self.fleet.wait_for(self.owed, timeout)
        self.received += delivery.frames
        return delivery, self.owed * self.clients - self.received

    def latencies(self) -> Latencies:
        """Latencies the connections measured since the last call."""
        assert self.fleet is not None, "connect() first"
        return self.fleet.latencies()
