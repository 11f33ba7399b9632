"""Every JavaScript example of the README and the docs' pages runs against agentcast and
prints what its page says it prints.

An example is a ```js block right after ``<!-- example: NAME -->`` (a name unique across
the pages); the next fenced block is its output, compared whole. The examples talk to
``agentcast serve`` at its default address, ``127.0.0.1:8282``: the test serves the same
demo agent (``AgentServer``) on a free port and puts that port in place of 8282. A ``.mjs``
example runs under Node in a temporary directory inside tests/js, so it imports the pinned
packages of tests/js/node_modules (``@ag-ui/client``, ``ai``); ``eventsource.js`` runs in headless
Chromium, on a page of the server's own origin. Each waits for the example's SSE stream to
be subscribed (the hub's stats), then has the demo agent answer "hello".
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from websockets.sync.client import connect

from agentcast import AgentServer
from agentcast.memgpt.backends import DemoAgentServer
from clients import run, wait_for
from doc_pages import doc_pages, where
from js_clients import JS_DIR, require_js_clients
from test_page import browser, certificates, chromium, wait  # noqa: F401 (fixtures)

EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w.]+) -->\n```js\n(?P<code>.*?)```\n.*?```\n(?P<output>.*?)```",
    re.S,
)
PLACEHOLDER = "127.0.0.1:8282"
TIMEOUT = 20.0  # seconds an example may take to print its output


@dataclass(frozen=True)
class Example:
    name: str
    where: str  # page:line
    code: str
    output: str  # what the page says it prints

    def served_by(self, port: int) -> str:
        assert PLACEHOLDER in self.code, f"{self.name} does not name {PLACEHOLDER}"
        return self.code.replace(PLACEHOLDER, f"127.0.0.1:{port}")


def doc_examples() -> list[Example]:
    found = []
    for page in doc_pages():
        text = page.read_text()
        for m in EXAMPLE.finditer(text):
            line = text.count("\n", 0, m.start("code")) + 1
            found.append(Example(m["name"], where(page, line), m["code"], m["output"]))
    return found


def examples() -> dict[str, Example]:
    return {example.name: example for example in doc_examples()}


def test_the_examples_are_found() -> None:
    names = [example.name for example in doc_examples()]
    assert sorted(names) == ["agui.mjs", "eventsource.js", "resume.mjs"], [
        example.where for example in doc_examples()
    ]


# ---- serving them ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[AgentServer]:
    with AgentServer(port=0) as served:  # the demo agent, as `agentcast serve` runs it
        yield served


def say_hello(server: AgentServer) -> None:
    """A user message to the demo agent over WebSocket; returns once its step has ended."""
    with connect(f"ws://127.0.0.1:{server.port}/") as client:
        client.send(json.dumps({"type": "user_message", "channel": "demo", "message": "hello"}))
        while json.loads(client.recv(timeout=10))["type"] != "agent_response_end":
            pass


def watching(server: AgentServer, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until the example's SSE stream is subscribed (while ``alive()``)."""
    stats = server.hub.stats

    def subscribed() -> bool:
        assert alive(), "the example ended before it subscribed"
        return stats().get("sse_streams") == 1 and stats().get("subscriptions") == 1

    run(wait_for(subscribed, timeout=TIMEOUT, what="the example's subscription"))


@contextlib.contextmanager
def node(example: Example, port: int) -> Iterator[subprocess.Popen[str]]:
    """The example running under Node, from a directory inside tests/js."""
    require_js_clients()
    with tempfile.TemporaryDirectory(dir=JS_DIR) as directory:
        script = Path(directory) / example.name
        script.write_text(example.served_by(port))
        process = subprocess.Popen(
            ["node", script.name],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def printed(process: subprocess.Popen[str]) -> str:
    """What the example printed, once it exited 0 with nothing on stderr."""
    out, errors = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, errors
    assert errors == "", errors
    return out


# ---- the examples ----------------------------------------------------------------------


def test_ag_ui_client_watches_a_run(server: AgentServer) -> None:
    example = examples()["agui.mjs"]
    with node(example, server.port) as process:
        watching(server, lambda: process.poll() is None)
        say_hello(server)
        assert printed(process) == example.output


def test_ai_sdk_resume_without_a_run_says_so(server: AgentServer) -> None:
    with node(examples()["resume.mjs"], server.port) as process:
        assert printed(process) == "no run open on chat demo (204)\n"


def test_ai_sdk_resume_replays_the_open_run(server: AgentServer) -> None:
    """The demo agent's answer to "hello", its run held open until the example resumes."""
    example = examples()["resume.mjs"]
    with server.hub.run("demo") as agent_run:
        demo = DemoAgentServer(SimpleNamespace(current_run=lambda: agent_run))
        demo.user_message("NULL", "demo", "hello")
        with node(example, server.port) as process:
            watching(server, lambda: process.poll() is None)
            agent_run.end()
            assert printed(process) == example.output


@pytest.mark.browser
def test_event_source_in_a_browser(server: AgentServer, chromium: WebDriver) -> None:  # noqa: F811
    example = examples()["eventsource.js"]
    chromium.get(f"http://127.0.0.1:{server.port}/healthz")  # a page of the server's origin
    chromium.execute_script(
        "window.printed = []; console.log = (...parts) => printed.push(parts.join(' '));\n"
        + example.served_by(server.port)
    )
    watching(server)
    say_hello(server)
    lines = example.output.splitlines()
    wait(
        chromium,
        lambda driver: len(driver.execute_script("return printed")) >= len(lines),
        "the example's output",
    )
    assert chromium.execute_script("return printed") == lines
