"""Which agent each client watches, for the peers that have no channels of their own.

The benchmark's receivers only read, so they cannot say which agent they want;
the server is told the plan instead (``route``): the k-th client to connect
watches agent ``route[k]``. A peer built on a library without channels keeps, per
agent, the set of its watchers' connections, as a user of that library would,
and sends an agent's message to that set only.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


class Watchers(Generic[C]):
    """Connections by the agent they watch; connections beyond the route watch nothing."""

    def __init__(self) -> None:
        self._route: list[str] = []
        self._next = 0  # index in the route of the next connection
        self.of_agent: dict[str, set[C]] = {}
        self._agent_of: dict[C, str] = {}

    def route(self, watched: Sequence[str]) -> None:
        """The k-th connection from now on watches ``watched[k]``."""
        self._route, self._next = list(watched), 0
        self.of_agent = {agent: set() for agent in self._route}
        self._agent_of = {}

    def add(self, connection: C) -> str | None:
        """Give ``connection`` the next place in the route; returns its agent (None: none)."""
        if self._next >= len(self._route):
            return None
        agent = self._route[self._next]
        self._next += 1
        self.of_agent[agent].add(connection)
        self._agent_of[connection] = agent
        return agent

    def discard(self, connection: C) -> None:
        agent = self._agent_of.pop(connection, None)
        if agent is not None:
            self.of_agent[agent].discard(connection)

    @property
    def routed(self) -> bool:
        """Whether a route was given (then only routed connections count as clients)."""
        return bool(self._route)

    @property
    def count(self) -> int:
        """Connections filed under an agent."""
        return len(self._agent_of)

    def of(self, agent: str) -> set[C]:
        """The connections watching ``agent`` (empty for an agent nobody watches)."""
        return self.of_agent.get(agent, set())
