"""``agentcast client`` as a user runs it: the real command, its stdin a pipe (or a
terminal), against real servers that stop and start again on the same port.

Each test failed against the client before issue 15: after a restart every line showed
the reply to the one before, Ctrl-C was ignored until Enter, a close while idle went
unnoticed, bad URLs ended in a traceback, a refusal gave no hint, 401 was retried. Since
issue 22 it speaks agentcast's native protocol by default and prints the runs as they
stream; the tests of what both protocols share run with each.
"""

from __future__ import annotations

import codecs
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

import jwt
import orjson
import pytest
from websockets.sync.client import connect

from agentcast.memgpt.app import AgentServer
from agentcast.serve.auth import Identity, JWTAuthenticator, UpgradeRequest
from redis_server import RedisServer, free_port

AGENTCAST = [sys.executable, "-m", "agentcast"]
WAIT = 30.0  # seconds any one expected line may take on a loaded machine
PROTOCOLS = ["agentcast", "memgpt"]
REPLY_END = {"agentcast": "-- run ", "memgpt": "-- agent_response_end --"}


def reply(text: str, protocol: str = "agentcast") -> list[str]:
    """What the demo agent's reply to ``text`` prints (a run's time as ``took N s``)."""
    arguments = {"message": f"You said: {text}"}
    if protocol == "memgpt":
        return [
            "-- agent_response_start --",
            f"[internal_monologue] The user said {text!r}; I will echo it back.",
            f"[function_message] Running send_message({arguments!r})",
            f"[assistant_message] You said: {text}",
            "-- agent_response_end --",
        ]
    return [
        f"[reasoning] The user said {text!r}; I will echo it back.",
        f"[tool send_message] {orjson.dumps(arguments).decode()}",
        "[result send_message] OK",
        f"[assistant] You said: {text}",
        "-- run success · took N s --",
    ]


def timeless(lines: list[str]) -> list[str]:
    """``lines`` with a run's measured time written ``N``."""
    return [re.sub(r"took \d+\.\d\d s", "took N s", line) for line in lines]


class Lines:
    """A child's output stream, read as it comes (``os.read`` on its descriptor, no line
    buffer) on a thread: line by line, waited on with a deadline; ``states`` keeps the
    whole text after each read, a last line still being printed included."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self.states: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream.fileno(),), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")()
        text = partial = ""
        while chunk := os.read(fd, 65536):
            piece = decoder.decode(chunk)
            text += piece
            with self._changed:
                self.states.append(text)
                self._changed.notify_all()
            *lines, partial = (partial + piece).split("\n")
            for line in lines:
                self._queue.put(line)
        if partial:
            self._queue.put(partial)
        self._queue.put(None)
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def expect(self, wanted: Callable[[str], bool] | str) -> str:
        """The next line ``wanted`` accepts (or that contains it); fail if none comes."""
        accepts = wanted if callable(wanted) else lambda line: wanted in line
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line {wanted!r} within {WAIT} s: {self.seen}") from None
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"the stream ended without {wanted!r}: {self.seen}")
            self.seen.append(line)
            if accepts(line):
                return line

    def until(self, condition: Callable[[str], bool], what: str) -> str:
        """The whole text so far, once ``condition`` holds for it (its lines are still
        left to ``expect``); fail if it does not in time."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while not condition(text := self.states[-1] if self.states else ""):
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    raise AssertionError(f"no {what} within {WAIT} s: {text!r}")
                self._changed.wait(left)
            return text

    def join(self) -> None:
        """Wait for the end of the stream (the process has exited)."""
        self._thread.join(WAIT)

    def rest(self) -> list[str]:
        """Every line until the stream ends (the process has exited)."""
        self.join()
        while (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


class Process:
    """A child process with its stdout and stderr read as lines; killed if still running."""

    def __init__(
        self,
        argv: list[str],
        stdin: int | IO[str] | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> None:
        self.popen = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.out = Lines(self.popen.stdout)
        self.err = Lines(self.popen.stderr)

    def type(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def wait(self) -> int:
        try:
            return self.popen.wait(WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {WAIT} s: {self.err.seen}") from None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self.out.join()  # before the streams close under the threads reading them
        self.err.join()
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """Start processes; each is killed (if still running) and reaped at the end."""
    started: list[Process] = []

    def start(
        *argv: str,
        stdin: int | IO[str] | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> Process:
        process = Process(list(argv), stdin, env)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def serve(processes: Callable[..., Process], port: int, *options: str) -> Process:
    """``agentcast serve`` on ``port``, once it listens."""
    server = processes(*AGENTCAST, "serve", "--port", str(port), *options)
    server.out.expect(f"ws://127.0.0.1:{port}/")
    return server


def stop(server: Process) -> None:
    """SIGTERM, as a user's Ctrl-C: the server closes every client with 1001 and exits."""
    server.popen.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def client(
    processes: Callable[..., Process],
    url: str,
    *options: str,
    protocol: str = "agentcast",
    stdin: int | IO[str] | None = subprocess.PIPE,
) -> Process:
    # Retries every 0.05 s at first, doubling: many tries while a server restarts.
    argv = [*AGENTCAST, "client", url, "--agent-id", "demo", "--retries", "12", "--backoff", "0.05"]
    return processes(*argv, "--protocol", protocol, *options, stdin=stdin)


def answered_then_server_stopped(
    processes: Callable[..., Process], protocol: str = "agentcast"
) -> tuple[int, Process]:
    """A client on a fresh port whose "one" was answered, then its server stopped (SIGTERM):
    the port and the client."""
    port = free_port()
    server = serve(processes, port)
    chat = client(processes, f"ws://127.0.0.1:{port}/", protocol=protocol)
    chat.type("one")
    chat.out.expect(REPLY_END[protocol])
    stop(server)
    return port, chat


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_line_gets_its_own_reply_across_a_server_restart(
    processes: Callable[..., Process], protocol: str
) -> None:
    port, chat = answered_then_server_stopped(processes, protocol)
    chat.type("two")  # typed while no server runs: sent once one runs again
    serve(processes, port)
    chat.out.expect("You said: two")
    chat.out.expect(REPLY_END[protocol])
    chat.type("three")
    chat.out.expect(REPLY_END[protocol])
    chat.popen.stdin.close()  # type: ignore[union-attr]
    assert chat.wait() == 0
    wanted = [*reply("one", protocol), *reply("two", protocol), *reply("three", protocol)]
    assert timeless(chat.out.rest()) == wanted
    notices = chat.err.rest()
    # The fresh server's channel_restarted (last_seq 0 < since) is a notice, not an answer.
    assert any("numbering restarted" in line for line in notices), notices
    assert all(line.startswith("agentcast client: ") for line in notices), notices


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_closing_while_the_client_is_idle_is_noticed_and_it_reconnects(
    processes: Callable[..., Process], protocol: str
) -> None:
    port, chat = answered_then_server_stopped(processes, protocol)
    chat.err.expect("reconnecting...")  # at once, with nothing typed
    serve(processes, port)
    chat.err.expect("reconnected")
    chat.type("two")
    chat.out.expect("You said: two")
    chat.out.expect(REPLY_END[protocol])
    assert timeless(chat.out.seen) == [*reply("one", protocol), *reply("two", protocol)]


def test_ctrl_d_while_the_server_is_away_quits_with_0(processes: Callable[..., Process]) -> None:
    _, chat = answered_then_server_stopped(processes)
    chat.err.expect("reconnecting...")
    chat.popen.stdin.close()  # type: ignore[union-attr]
    assert chat.wait() == 0  # not after --retries attempts: nothing was left to send
    assert not any("giving up" in line for line in chat.err.rest())


@pytest.mark.parametrize("terminal", [False, True], ids=["stdin-pipe", "stdin-tty"])
def test_ctrl_c_while_waiting_for_input_exits_at_once_with_130(
    processes: Callable[..., Process], terminal: bool
) -> None:
    port = free_port()
    serve(processes, port)
    if terminal:
        controller, tty = pty.openpty()
        chat = client(processes, f"ws://127.0.0.1:{port}/", stdin=tty)
        os.close(tty)
        os.write(controller, b"one\n")
    else:
        chat = client(processes, f"ws://127.0.0.1:{port}/")
        chat.type("one")
    try:
        chat.out.expect(REPLY_END["agentcast"])  # now it waits for the next line
        chat.popen.send_signal(signal.SIGINT)
        assert chat.wait() == 130
    finally:
        if terminal:
            os.close(controller)
    assert not any("Traceback" in line for line in chat.err.rest())


@pytest.mark.parametrize("url", ["127.0.0.1:8282", "http://127.0.0.1:8282/"])
def test_a_url_that_is_not_ws_is_one_line_and_exit_2(
    processes: Callable[..., Process], url: str
) -> None:
    chat = client(processes, url)
    assert chat.wait() == 2
    [line] = chat.err.rest()
    assert "is not a ws:// or wss:// URL (did you mean ws://127.0.0.1:8282" in line, line


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_refused_first_connect_ends_at_once_with_a_hint(
    processes: Callable[..., Process], protocol: str
) -> None:
    port = free_port()  # nothing listens there: no retry can fix a wrong port
    chat = client(processes, f"ws://127.0.0.1:{port}/", "--backoff", "10", protocol=protocol)
    assert chat.wait() == 1  # not after 12 retries 10 s apart
    [line] = chat.err.rest()
    assert line == (
        f"agentcast client: cannot connect to ws://127.0.0.1:{port}/: nothing listens on"
        f" 127.0.0.1:{port} (is `agentcast serve` running, on this port?)"
    ), line


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_input_that_ends_at_once_still_says_whether_the_server_was_reached(
    processes: Callable[..., Process], protocol: str
) -> None:
    port = free_port()
    away = client(processes, f"ws://127.0.0.1:{port}/", stdin=subprocess.DEVNULL, protocol=protocol)
    assert away.wait() == 1  # not a silent 0 for a server it never reached
    [line] = away.err.rest()
    assert f"cannot connect to ws://127.0.0.1:{port}/: nothing listens" in line, line
    serve(processes, port)
    there = client(
        processes, f"ws://127.0.0.1:{port}/", stdin=subprocess.DEVNULL, protocol=protocol
    )
    assert there.wait() == 0
    assert there.err.rest() == [
        f"agentcast client: connected to ws://127.0.0.1:{port}/; type a message, Ctrl-D to quit"
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_refused_handshake_is_one_line_and_never_retried(
    processes: Callable[..., Process], protocol: str
) -> None:
    authenticate = JWTAuthenticator(secret=b"s" * 32)
    with AgentServer(port=0, authenticate=authenticate) as server:
        chat = client(processes, f"ws://127.0.0.1:{server.port}/", protocol=protocol)
        assert chat.wait() == 1
        [line] = chat.err.rest()
        assert server.hub.stats()["auth_refused"] == 1  # one attempt, not --retries more
    assert line.startswith(f"agentcast client: ws://127.0.0.1:{server.port}/ refused"), line
    assert "HTTP 401" in line, line
    assert line.endswith("the server wants a token; give it with --token or AGENTCAST_TOKEN")


SECRET = b"s" * 32


def token(**claims: object) -> str:
    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 300, **claims}, SECRET, "HS256")


@pytest.fixture
def auth_server() -> Iterator[tuple[AgentServer, list[UpgradeRequest]]]:
    """An AgentServer that wants a JWT, and the upgrade requests it was given."""
    requests: list[UpgradeRequest] = []
    verify = JWTAuthenticator(secret=SECRET)

    def authenticate(request: UpgradeRequest) -> Identity:
        requests.append(request)
        return verify(request)

    with AgentServer(port=0, authenticate=authenticate) as server:
        yield server, requests


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_token_goes_in_an_authorization_header_not_the_url(
    processes: Callable[..., Process],
    auth_server: tuple[AgentServer, list[UpgradeRequest]],
    protocol: str,
    given: str,
) -> None:
    server, requests = auth_server
    secret = token(agents=["demo"])
    options = ["--token", secret] if given == "option" else []
    environment = {**os.environ, "AGENTCAST_TOKEN": secret} if given == "environment" else None
    argv = [*AGENTCAST, "client", f"ws://127.0.0.1:{server.port}/", "--agent-id", "demo"]
    chat = processes(*argv, "--protocol", protocol, *options, env=environment)
    chat.type("one")
    chat.out.expect(REPLY_END[protocol])
    [request] = requests
    assert request.headers["Authorization"] == f"Bearer {secret}"
    assert "token" not in request.path, request.path


def test_a_token_in_the_url_still_works(
    processes: Callable[..., Process], auth_server: tuple[AgentServer, list[UpgradeRequest]]
) -> None:
    server, _ = auth_server
    chat = client(processes, f"ws://127.0.0.1:{server.port}/?token={token(agents=['demo'])}")
    chat.type("one")
    chat.out.expect(REPLY_END["agentcast"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_token_refused_says_to_check_it(
    processes: Callable[..., Process],
    auth_server: tuple[AgentServer, list[UpgradeRequest]],
    protocol: str,
) -> None:
    server, _ = auth_server
    expired = token(agents=["demo"], exp=int(time.time()) - 60)
    url = f"ws://127.0.0.1:{server.port}/"
    chat = client(processes, url, "--token", expired, protocol=protocol)
    assert chat.wait() == 1
    [line] = chat.err.rest()
    assert "HTTP 401" in line, line
    assert line.endswith("the server did not accept the token; check --token / AGENTCAST_TOKEN")
    assert expired not in line


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_forbidden_reply_ends_the_client_with_exit_1(
    processes: Callable[..., Process],
    auth_server: tuple[AgentServer, list[UpgradeRequest]],
    protocol: str,
) -> None:
    server, _ = auth_server
    others = token(agents=["other"])  # not demo
    url = f"ws://127.0.0.1:{server.port}/"
    chat = client(processes, url, "--token", others, protocol=protocol)
    chat.type("one")
    assert chat.wait() == 1
    connected = "agentcast client: connected"
    errors = [line for line in chat.err.rest() if not line.startswith(connected)]
    assert len(errors) == 1, errors
    assert errors[0].startswith("agentcast client: forbidden: not allowed to "), errors
    assert "('demo'); check the token (--token / AGENTCAST_TOKEN)" in errors[0], errors
    assert chat.out.rest() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_terminal_escapes_in_an_agents_reply_are_printed_escaped_not_obeyed(
    processes: Callable[..., Process], protocol: str
) -> None:
    """The demo agent echoes the line: an OSC 52 (clipboard write) and a CSI in it reach the
    watcher's terminal as text, never as escapes (a shared agent may write anything)."""
    port = free_port()
    serve(processes, port)
    chat = client(processes, f"ws://127.0.0.1:{port}/", protocol=protocol)
    chat.type("copy \x1b]52;c;aGVsbG8=\x07 then \x9b2J")
    label = "[assistant]" if protocol == "agentcast" else "[assistant_message]"
    line = chat.out.expect(label)
    assert line == f"{label} You said: copy \\x1b]52;c;aGVsbG8=\\x07 then \\x9b2J"
    chat.out.expect(REPLY_END[protocol])
    assert not any(c in "".join(chat.out.seen) for c in "\x1b\x07\x9b"), chat.out.seen


def grown(states: list[str], line_start: str) -> list[str]:
    """Each state of the line that begins ``line_start``, as it was printed, in order."""
    lines: list[str] = []
    for text in states:
        last = text.rpartition("\n")[2] if not text.endswith("\n") else ""
        if last.startswith(line_start) and (not lines or lines[-1] != last):
            lines.append(last)
    return lines


def test_tokens_are_printed_as_they_arrive(processes: Callable[..., Process]) -> None:
    """At an LLM's pace (``--word-delay``), the reply and the call's arguments show piece
    by piece: the terminal gets partial lines that grow before each line ends."""
    port = free_port()
    serve(processes, port, "--word-delay", "0.1")
    chat = client(processes, f"ws://127.0.0.1:{port}/")
    text = "one two three four five six"
    chat.type(text)
    output = chat.out.until(lambda t: "-- run success" in t, "the run's footer")
    assert timeless(output.splitlines()) == reply(text)
    for start, whole in (("[tool ", reply(text)[1]), ("[assistant] ", reply(text)[3])):
        shown = grown(chat.out.states, start)
        assert all(whole.startswith(line) for line in shown), shown
        assert len([line for line in shown if line != whole]) >= 3, shown  # pieces, as they came


def joined(text: str) -> list[str]:
    """The lines of ``text`` with each continued line (``[label …] more``) put back after
    the line it continues."""
    lines: list[str] = []
    for line in text.splitlines():
        continued = re.fullmatch(r"\[(.+?) …\] (.*)", line)
        if continued is None:
            lines.append(line)
            continue
        label, more = continued.groups()
        at = max(i for i, kept in enumerate(lines) if kept.startswith(f"[{label}] "))
        lines[at] += more
    return lines


def test_a_watcher_resumes_a_run_exactly_after_its_node_comes_back(
    processes: Callable[..., Process], redis_server: RedisServer
) -> None:
    """Two nodes on one Redis: the agent streams on node A; ``agentcast client`` watches on
    node B, which stops half-way through the run and starts again. The watcher resumes
    after the last seq it printed: every text whole, no piece twice, none missing."""
    redis = ("--redis", redis_server.url)
    node_a, node_b = free_port(), free_port()
    serve(processes, node_a, *redis, "--word-delay", "0.05")
    server_b = serve(processes, node_b, *redis)
    watcher = client(processes, f"ws://127.0.0.1:{node_b}/")
    watcher.err.expect("connected to")
    text = "a line long enough that its reply streams for a while"
    with connect(f"ws://127.0.0.1:{node_a}/?protocol=agentcast") as talker:
        line = {"type": "user_message", "channel": "demo", "message": text}
        talker.send(orjson.dumps(line).decode())
        watcher.out.until(lambda t: "[reasoning] The user said 'a line" in t, "the thought")
        stop(server_b)
        watcher.err.expect("reconnecting...")
        serve(processes, node_b, *redis)
        watcher.err.expect("reconnected")
        output = watcher.out.until(lambda t: "-- run " in t, "the run's footer")
        while orjson.loads(talker.recv(timeout=WAIT))["type"] != "agent_response_end":
            pass
    lines = joined(output)
    assert lines[:4] == reply(text)[:4], output
    assert re.fullmatch(r"-- run success · (took \d+\.\d\d s|not timed: .*) --", lines[4])
    assert "…] " in output  # the stream was cut by the drop, and went on below it
