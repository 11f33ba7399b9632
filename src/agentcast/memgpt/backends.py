"""Agent backends: the built-in demo agent and loading one by ``module:attr``.

A backend is any object with MemGPT ``SyncServer``'s two methods,
``create_agent(user_id, agent_config)`` and ``user_message(user_id, agent_id, message)``,
built as ``factory(default_interface=interface)``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import re
import threading
import time
from collections import OrderedDict
from typing import Any, ClassVar, Protocol

import orjson

from agentcast.memgpt.interface import SyncWebSocketInterface
from agentcast.streams.producer import MessageStream, ToolCallStream


class BadBackend(ValueError):
    """What ``load_backend`` or ``check_backend`` refuses: not a usable backend."""


class Backend(Protocol):
    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> Any: ...
    def user_message(self, user_id: str, agent_id: str, message: str) -> Any: ...


class DemoAgentServer:
    """An agent with no LLM and no network: each user message gets a thought, a call, a reply.

    Served as a run (``interface.step``, as ``AgentServer`` does), it streams them as an
    LLM would: the thought as a reasoning message and the reply as a text message, word
    by word, and the call's arguments piece by piece, ``word_delay`` seconds apart (0: as
    fast as they can be queued). A MemGPT client gets the same three whole messages
    either way. It keeps the configs of the ``max_agents`` agents created or messaged last (least
    recently used forgotten first), each at most ``MAX_CONFIG_BYTES`` of JSON: clients
    choose the names and configs, so what it keeps must not grow with what they send.
    """

    MAX_CONFIG_BYTES: ClassVar[int] = 4096

    def __init__(
        self,
        default_interface: SyncWebSocketInterface,
        max_agents: int = 1000,
        word_delay: float = 0.0,
    ) -> None:
        if max_agents < 1:
            raise ValueError("max_agents must be at least 1")
        if word_delay < 0:
            raise ValueError("word_delay must be >= 0")
        self.word_delay = word_delay
        self.interface = default_interface
        self.max_agents = max_agents
        self.agents: OrderedDict[str, dict[str, Any]] = OrderedDict()  # oldest use first
        self._lock = threading.Lock()  # agent steps run on several worker threads
        self._ids = itertools.count(1)

    def create_agent(self, user_id: str, agent_config: dict[str, Any]) -> str:
        if len(orjson.dumps(agent_config)) > self.MAX_CONFIG_BYTES:
            raise ValueError(f"agent config is larger than {self.MAX_CONFIG_BYTES} bytes of JSON")
        agent_id = str(agent_config.get("name") or f"agent-{next(self._ids)}")
        with self._lock:
            self.agents[agent_id] = dict(agent_config)
            self.agents.move_to_end(agent_id)
            while len(self.agents) > self.max_agents:
                self.agents.popitem(last=False)
        return agent_id

    def user_message(self, user_id: str, agent_id: str, message: str) -> None:
        with self._lock:
            if agent_id in self.agents:
                self.agents.move_to_end(agent_id)
        thought = f"The user said {message!r}; I will echo it back."
        reply = f"You said: {message}"
        # MemGPT's own interfaces (the bench's peer) have no runs: whole messages then.
        current_run = getattr(self.interface, "current_run", None)
        run = None if current_run is None else current_run()
        if run is None:
            self.interface.internal_monologue(thought)
            self.interface.function_message(f"Running send_message({message!r})")
            self.interface.assistant_message(reply)
            return
        with run.message(kind="reasoning") as reasoning:
            self._stream(reasoning, _words(thought))
        with run.tool_call("send_message") as call:
            self._stream(call, _json_pieces({"message": reply}))
        run.tool_result(call.id, "OK")
        with run.message() as answer:
            self._stream(answer, _words(reply))

    def _stream(self, stream: MessageStream | ToolCallStream, pieces: list[str]) -> None:
        for piece in pieces:
            stream.delta(piece)
            if self.word_delay:
                time.sleep(self.word_delay)  # a worker thread's pace, as an LLM's tokens come


MAX_PIECES = 64


def _words(text: str) -> list[str]:
    """``text`` cut after each run of spaces: the pieces join back into it exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def _json_pieces(arguments: dict[str, Any]) -> list[str]:
    """The JSON of ``arguments`` in pieces of 8 characters, as a model streams it (at most
    ``MAX_PIECES`` of them: a 100 kB message is not 12,500 events)."""
    text = orjson.dumps(arguments).decode()
    size = max(8, -(-len(text) // MAX_PIECES))
    return [text[i : i + size] for i in range(0, len(text), size)]


def load_backend(spec: str) -> Any:
    """``module:attr`` -> the factory it names; ``BadBackend`` saying why otherwise."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadBackend(f"backend must look like module:attr, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadBackend(f"cannot import backend module {module_name!r}: {exc}") from None
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise BadBackend(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise BadBackend(f"backend {spec!r} is not callable")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: AgentServer checks what it builds
        return factory
    try:
        signature.bind(default_interface=None)
    except TypeError as exc:
        raise BadBackend(
            f"backend {spec!r} cannot be built as factory(default_interface=interface): {exc}"
        ) from None
    return factory


def check_backend(backend: object) -> None:
    """``BadBackend`` unless ``backend`` has MemGPT ``SyncServer``'s two methods."""
    missing = [
        name
        for name in ("create_agent", "user_message")
        if not callable(getattr(backend, name, None))
    ]
    if missing:
        raise BadBackend(
            f"backend {type(backend).__name__!r} has no {' or '.join(missing)} method (a backend"
            " needs MemGPT SyncServer's create_agent and user_message)"
        )
