"""The live page (``GET /``): its files and headers over real sockets, and the page itself
in real browsers against real agentcast servers on 127.0.0.1: headless Chromium from
Debian's ``chromium`` and ``chromium-driver`` driven by selenium, and headless Firefox
driven over Marionette.

The browser tests are marked ``browser``. Without Chromium they fail saying what to install
(CI installs it: see the README's test command). Firefox is taken where it is
(``browsers.find_firefox``: Debian's firefox-esr, Mozilla's own build, or
``AGENTCAST_FIREFOX``); without one its test is skipped saying how to install it, and the
run's summary says which browsers the page tests ran in.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import trustme
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

with warnings.catch_warnings():  # mozinfo calls distro.linux_distribution() at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver import By as FirefoxBy
    from marionette_driver import Wait as FirefoxWait
    from marionette_driver.marionette import Marionette

from agentcast import Broadcaster, Publisher
from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.backends import DemoAgentServer
from agentcast.notices import GAP_CODES, broadcasts_lost, channel_restarted, resume_gap
from agentcast.notices import skipped as skipped_notice
from agentcast.serve.auth import JWTAuthenticator
from agentcast.serve.page import PAGE_FILES
from agentcast.serve.tls import server_context
from browsers import CHROMIUM_INSTALL, BrowsersUsed, browsers_used, find_firefox
from clients import run, user_message, wait_for, websockets_clients
from redis_server import RedisServer, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SECRET = b"p" * 32
WAIT = 20.0  # seconds a page has to show what a test waits for
REPO = Path(__file__).resolve().parent.parent


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """Status, headers and body of one GET, the path sent exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def token(**claims: Any) -> str:
    body = {"sub": "browser", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, SECRET, "HS256")


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    server = AgentServer(port=0).start()
    yield server
    server.stop()


# ---- the files, over plain HTTP ------------------------------------------------------


def test_the_page_knows_every_gap_notice_code_the_server_sends() -> None:
    """page.js lists the gap codes by hand (no build step): it must match agentcast.notices."""
    script = (REPO / "src/agentcast/serve/static/page.js").read_text()
    [listed] = re.findall(r"^const GAP_CODES = \[(.*)\];$", script, re.MULTILINE)
    assert {code.strip().strip('"') for code in listed.split(",")} == GAP_CODES


def test_page_files_are_served_with_their_type_and_a_strict_policy(
    agent_server: AgentServer,
) -> None:
    port = agent_server.port
    for path, (name, content_type) in PAGE_FILES.items():
        status, headers, body = get(port, path.decode() + "?agent=x")
        assert status == 200, path
        assert body == (REPO / "src/agentcast/serve/static" / name).read_bytes()
        assert headers["Content-Type"] == content_type
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-cache"
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy
        assert f"connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port};" in policy


def test_a_host_header_that_is_no_host_is_not_repeated_in_the_policy(
    agent_server: AgentServer,
) -> None:
    _, headers, _ = get(agent_server.port, "/", {"Host": "x; script-src *"})
    assert "connect-src 'self'; " in headers["Content-Security-Policy"]
    assert "*" not in headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/../../../../etc/passwd",
        "/static/page.js",
        "/page.js/../app.py",
        "/%2e%2e/app.py",
        "/index.html",
        "/app.py",
        "/page.js.map",
        "//page.js",
    ],
)
def test_only_the_fixed_paths_are_served(agent_server: AgentServer, path: str) -> None:
    status, _, body = get(agent_server.port, path)
    assert (status, body) == (404, b"not found\n"), (status, body[:200])


def test_status_counts_the_connected_clients(agent_server: AgentServer) -> None:
    async def scenario() -> bytes:
        async with websockets_clients(f"ws://127.0.0.1:{agent_server.port}/", 3):
            return get(agent_server.port, "/status")[2]

    assert orjson.loads(run(scenario())) == {"clients": 3}
    status, headers, body = get(agent_server.port, "/status")
    assert (status, orjson.loads(body)) == (200, {"clients": 0})
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"


def test_status_needs_a_token_when_clients_must_authenticate() -> None:
    with AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)) as server:
        port = server.port
        assert get(port, "/status")[0] == 401
        assert get(port, "/status?token=forged")[0] == 401
        assert get(port, f"/status?token={token()}")[::2] == (200, b'{"clients":0}')
        bearer = {"Authorization": f"Bearer {token()}"}
        assert get(port, "/status", bearer)[0] == 200
        assert get(port, "/")[0] == 200  # the page itself holds nothing of the server's


def test_the_page_stays_on_the_websocket_port_when_probes_have_their_own(
    hub_factory: Callable[..., Broadcaster],
) -> None:
    hub = hub_factory(metrics_port=0)
    assert get(hub.port, "/")[0] == 200
    assert get(hub.port, "/status")[0] == 200
    assert get(hub.port, "/metrics")[0] == 404  # not here: on the metrics port
    assert get(hub.metrics_port, "/metrics")[0] == 200
    assert get(hub.metrics_port, "/")[0] == 404  # its WebSocket could not connect there


def test_serve_names_the_page_and_serves_it() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "agentcast", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            banner = process.stdout.readline()
            assert f"(page: http://127.0.0.1:{port}/)" in banner, banner
            status, headers, _ = get(port, "/?agent=demo")
            assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        finally:
            process.terminate()
            process.communicate(timeout=10)


def test_the_page_files_ship_in_a_built_package(tmp_path: Path) -> None:
    """``build_py`` copies what a wheel (``pip install .``) gets of the Python side."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    shipped = tmp_path / "agentcast" / "serve" / "static"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(n for n, _ in PAGE_FILES.values())


# ---- the page in Chromium ------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A trustme certificate for 127.0.0.1 (cert and key files) and the base64 SHA-256 of
    its public key, the one key Chromium is told to accept without knowing the CA."""
    directory = tmp_path_factory.mktemp("tls")
    issued = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    issued.private_key_pem.write_to_path(str(keyfile))
    for pem in issued.cert_chain_pems:
        pem.write_to_path(str(certfile), append=True)
    return certfile, keyfile, spki_hash(issued.cert_chain_pems[0].bytes())


def spki_hash(pem: bytes) -> str:
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_pem_x509_certificate(pem).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def browser(
    request: pytest.FixtureRequest, certificates: tuple[Path, Path, str]
) -> Iterator[WebDriver]:
    """One headless Chromium for the module; each test opens its pages in it."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: {CHROMIUM_INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1100,760",
        f"--ignore-certificate-errors-spki-list={certificates[2]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browsers_used(request.config).started["Chromium"] = driver.capabilities["browserVersion"]
    driver.get("about:blank")
    yield driver
    driver.quit()


@pytest.fixture
def chromium(browser: WebDriver) -> Iterator[WebDriver]:
    """The module's browser, left with one blank tab and an empty console log."""
    yield browser
    for handle in browser.window_handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(browser.window_handles[0])
    browser.get("about:blank")
    browser.get_log("browser")


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Until ``condition`` holds in the page (polled by selenium), else fail saying
    ``what`` was awaited and what the page shows."""

    def shown(driver: WebDriver) -> str:
        try:
            return driver.find_element(By.TAG_NAME, "body").text[-1500:]
        except WebDriverException:
            return "(no page)"

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition)
    except TimeoutException:
        said = f"waited {WAIT} s for {what}; the page shows:\n{shown(driver)}"
        raise AssertionError(said) from None


def state(driver: WebDriver) -> tuple[str, str]:
    element = driver.find_element(By.ID, "state")
    return element.get_attribute("data-state") or "", element.text


def until_state(driver: WebDriver, wanted: str) -> None:
    wait(driver, lambda d: state(d)[0] == wanted, f"state {wanted}")


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    until_state(driver, "open")


SHOWN = """
return [...document.querySelectorAll('#log .entry, #log details.tool, #log .run-foot')].map(e => {
  if (e.matches('details.tool')) return ['tool', e.dataset.name,
    e.querySelector('.args').textContent, e.querySelector('.result').textContent];
  if (e.matches('.run-foot')) return ['foot', e.dataset.outcome,
    e.querySelector('.outcome').textContent, e.dataset.seqs];
  if (e.matches('.entry.user')) return ['you', e.querySelector('.text').textContent];
  return [e.dataset.kind, e.querySelector('.text').textContent];
})
"""


def shown(driver: WebDriver) -> list[tuple[str, ...]]:
    """What the log shows, in order: ("you", text), ("reasoning" | "text", text),
    ("tool", name, arguments, result), ("foot", outcome, text, "first_seq last_seq")."""
    return [tuple(item) for item in driver.execute_script(SHOWN)]


def said(driver: WebDriver) -> list[tuple[str, ...]]:
    """``shown`` without the footers and the lines typed here: what the agent said."""
    return [item for item in shown(driver) if item[0] not in ("foot", "you")]


def footers(driver: WebDriver) -> list[tuple[str, str]]:
    """(outcome, text) of each run's footer."""
    return [(item[1], item[2]) for item in shown(driver) if item[0] == "foot"]


def seq_ranges(driver: WebDriver) -> list[tuple[int, int]]:
    """The (first, last) seq each finished run's footer names."""
    ranges = []
    for item in shown(driver):
        if item[0] == "foot" and item[3]:  # a run's (a line's with no run has none)
            first, last = item[3].split()
            ranges.append((int(first), int(last)))
    return ranges


def demo_reply(text: str) -> list[tuple[str, ...]]:
    """What the demo agent's run answering ``text`` shows, its footer aside."""
    arguments = orjson.dumps({"message": f"You said: {text}"}).decode()
    return [
        ("reasoning", f"The user said {text!r}; I will echo it back."),
        ("tool", "send_message", arguments, "OK"),
        ("text", f"You said: {text}"),
    ]


def notices(driver: WebDriver) -> list[str]:
    return [n.text for n in driver.find_elements(By.CSS_SELECTOR, "#log .notice")]


def say(driver: WebDriver, text: str) -> None:
    """Type ``text`` into the page's message field and press Enter; wait for the reply."""
    field = wait(driver, lambda d: d.find_element(By.ID, "message").is_enabled() and
                 d.find_element(By.ID, "message"), "an enabled message field")  # fmt: skip
    field.send_keys(text, Keys.ENTER)
    until_reply(driver, text)


def until_reply(driver: WebDriver, text: str) -> None:
    """Until a finished run shows the demo agent's reply to ``text``."""
    script = (
        "return [...document.querySelectorAll('#log .run.done .entry.kind-text .text')]"
        ".some(t => t.textContent === arguments[0])"
    )
    wait(driver, lambda d: d.execute_script(script, f"You said: {text}"), f"the reply to {text!r}")


def last_seq(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "last-seq").text)


@pytest.fixture
def slow_server() -> Iterator[AgentServer]:
    """The demo agent at an LLM's pace: a word (or 8 characters of arguments) every 30 ms."""
    server = AgentServer(functools.partial(DemoAgentServer, word_delay=0.03), port=0).start()
    yield server
    server.stop()


@pytest.mark.browser
def test_page_loads_with_no_console_errors(chromium: WebDriver, agent_server: AgentServer) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    wait(chromium, lambda d: d.find_element(By.ID, "clients").text == "1", "client count 1")
    say(chromium, "hello")
    log = chromium.get_log("browser")
    assert [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")] == []


@pytest.mark.browser
def test_a_message_typed_gets_the_demo_agents_run_as_one_card(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    say(chromium, "hello there")
    (card,) = chromium.find_elements(By.CSS_SELECTOR, ".run.done")
    assert card.find_element(By.CSS_SELECTOR, ".entry.user").text.endswith("hello there")
    assert shown(chromium)[:-1] == [("you", "hello there"), *demo_reply("hello there")]
    [(outcome, footer)] = footers(chromium)
    assert outcome == "success"
    assert re.fullmatch(r"success · took \d+ ms|success · took \d+\.\d s", footer), footer
    [(first, last)] = seq_ranges(chromium)
    assert (first, str(last)) == (1, last_seq(chromium))


@pytest.mark.browser
def test_a_tool_call_is_a_card_that_folds_once_it_has_its_result(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    say(chromium, "fold me")
    tool = chromium.find_element(By.CSS_SELECTOR, "details.tool")
    arguments = orjson.dumps({"message": "You said: fold me"}).decode()
    assert tool.get_attribute("open") is None  # folded: the summary says it all
    summary = tool.find_element(By.TAG_NAME, "summary")
    for part, text in (("name", "send_message"), ("preview", arguments), ("status", "OK")):
        assert summary.find_element(By.CLASS_NAME, part).text == text
    assert tool.find_element(By.CSS_SELECTOR, "pre.args").text == ""  # hidden while folded
    summary.click()
    wait(chromium, lambda _: tool.get_attribute("open") is not None, "the card to unfold")
    assert tool.find_element(By.CSS_SELECTOR, "pre.args").text == arguments
    assert tool.find_element(By.CSS_SELECTOR, "pre.result").text == "OK"


RECORD_TEXTS = """
window.seen = {text: [], args: []};
new MutationObserver(() => {
  for (const [key, selector] of [['text', '.entry.kind-text .text'], ['args', 'pre.args']]) {
    const now = [...document.querySelectorAll('#log ' + selector)].map(t => t.textContent);
    const last = now[now.length - 1];
    const seen = window.seen[key];
    if (last !== undefined && seen[seen.length - 1] !== last) seen.push(last);
  }
}).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.browser
def test_tokens_and_arguments_appear_as_they_arrive(
    chromium: WebDriver, slow_server: AgentServer
) -> None:
    """The demo agent streams word by word: the page shows each text growing, the way
    it arrives, before its end (every text it showed is a prefix of the next)."""
    open_page(chromium, f"http://127.0.0.1:{slow_server.port}/?agent=demo")
    chromium.execute_script(RECORD_TEXTS)
    text = "the quick brown fox jumps over the lazy dog"
    say(chromium, text)
    seen = chromium.execute_script("return window.seen")
    reply = f"You said: {text}"
    arguments = orjson.dumps({"message": reply}).decode()
    for key, final in (("text", reply), ("args", arguments)):
        grown = seen[key]
        assert grown[-1] == final, grown
        assert all(b.startswith(a) for a, b in itertools.pairwise(grown)), grown
        partial = [t for t in grown if t and t != final]
        assert len(partial) >= 3, grown  # several states between empty and whole


@pytest.mark.browser
def test_lines_typed_during_a_reply_wait_their_turn_and_get_a_run_each(
    chromium: WebDriver, slow_server: AgentServer
) -> None:
    """Sent at once, two lines would run at once on one channel, their events interleaved:
    the second waits (queued) until the first is answered."""
    open_page(chromium, f"http://127.0.0.1:{slow_server.port}/?agent=demo")
    field = chromium.find_element(By.ID, "message")
    field.send_keys("first", Keys.ENTER)
    field.send_keys("second", Keys.ENTER)
    wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, ".run.queued"), "a queued line")
    until_reply(chromium, "second")
    assert [item for item in shown(chromium) if item[0] != "foot"] == [
        ("you", "first"),
        *demo_reply("first"),
        ("you", "second"),
        *demo_reply("second"),
    ]
    assert [outcome for outcome, _ in footers(chromium)] == ["success", "success"]
    assert contiguous(seq_ranges(chromium)), seq_ranges(chromium)


@pytest.mark.browser
def test_a_run_joined_mid_way_shows_its_text_so_far_then_the_rest(
    chromium: WebDriver,
) -> None:
    """Little history kept: the page's resume from 0 gets ``history_trimmed`` and a snapshot
    of the open run (its messages so far as one merged delta), then the live tail."""
    factory = functools.partial(DemoAgentServer, word_delay=0.03)
    text = "one two three four five six seven eight nine ten eleven twelve"

    async def talk_until_half_way(port: int) -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}/?protocol=agentcast", 1) as (client,):
            await client.send(orjson.dumps({"type": "user_message", "channel": "mid",
                                            "message": text}).decode())  # fmt: skip
            deltas = 0
            while deltas < 4:
                deltas += orjson.loads(await client.recv())["type"] == "message_delta"

    with AgentServer(factory, port=0, history_size=3) as server:
        run(talk_until_half_way(server.port))
        open_page(chromium, f"http://127.0.0.1:{server.port}/?agent=mid")
        wait(chromium, lambda d: footers(d), "the run's end")
    assert said(chromium) == demo_reply(text)
    assert any("no longer kept" in n for n in notices(chromium)), notices(chromium)
    [(outcome, footer)] = footers(chromium)
    assert outcome == "success" and "not timed: it may have begun before" in footer, footer


@pytest.mark.browser
def test_a_drop_mid_run_resumes_where_it_stopped(
    chromium: WebDriver, slow_server: AgentServer
) -> None:
    """The page's socket closes half-way through the reply; it reconnects, resumes with
    ``since`` and the same card goes on: every text whole, no piece twice."""
    open_page(chromium, f"http://127.0.0.1:{slow_server.port}/?agent=demo")
    text = "a reply long enough to be cut in the middle of its stream"
    chromium.find_element(By.ID, "message").send_keys(text, Keys.ENTER)
    wait(
        chromium,
        lambda d: d.find_elements(By.CSS_SELECTOR, ".entry.kind-reasoning.streaming"),
        "the thought under way",
    )
    chromium.execute_script("session.socket.close(4000, 'test drop')")
    wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, ".run.paused"), "a paused run")
    until_state(chromium, "open")
    until_reply(chromium, text)
    assert said(chromium) == demo_reply(text)
    assert len(chromium.find_elements(By.CSS_SELECTOR, ".run")) == 1
    [(first, last)] = seq_ranges(chromium)
    assert (first, str(last)) == (1, last_seq(chromium))


SSE_ENCODINGS = ["agentcast", "agui", "aisdk", "letta"]
LOOKUP_ARGUMENTS = '{"q": "fox"}'
WORDS = re.findall(r"\S+ *", "the quick brown fox jumps over the lazy dog.")  # as a model's


def sse_page(port: int, agent: str, protocol: str, fragment: str = "") -> str:
    return f"http://127.0.0.1:{port}/?agent={agent}&transport=sse&protocol={protocol}{fragment}"


def watched(hub: Broadcaster, streams: int = 1) -> None:
    """Until the hub holds ``streams`` SSE streams, each subscribed: what is published
    from then on reaches the page."""
    condition = {"sse_streams": streams, "subscriptions": streams}
    run(wait_for(lambda: {k: hub.stats()[k] for k in condition} == condition, what="the stream"))


def stream_a_run(hub: Broadcaster, channel: str) -> None:
    """A run with a thought, a tool call and its result, and a reply word by word."""
    with hub.run(channel) as agent_run:
        agent_run.say("let me look", kind="reasoning")
        with agent_run.tool_call("lookup") as call:
            for piece in ('{"q": ', '"fox"}'):
                call.delta(piece)
        agent_run.tool_result(call.id, "found")
        with agent_run.message() as reply:
            for word in WORDS:
                reply.delta(word)
        agent_run.end(usage={"input_tokens": 3, "output_tokens": 11})


def streamed_run() -> list[tuple[str, ...]]:
    """What the page shows of ``stream_a_run``, its footer aside."""
    return [
        ("reasoning", "let me look"),
        ("tool", "lookup", LOOKUP_ARGUMENTS, "found"),
        ("text", "".join(WORDS)),
    ]


@pytest.mark.browser
@pytest.mark.parametrize("protocol", SSE_ENCODINGS)
def test_each_sse_encoding_is_shown_as_the_same_run(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster], protocol: str
) -> None:
    """The page watches over an ``EventSource`` in each of the server's SSE encodings and
    decodes it into the same cards; it has no WebSocket then, so nothing to send on, and
    its policy lets the stream through (no console error)."""
    hub = hub_factory()
    open_page(chromium, sse_page(hub.port, "enc", protocol))
    watched(hub)
    stream_a_run(hub, "enc")
    wait(chromium, lambda d: footers(d), "the run's end")
    assert said(chromium) == streamed_run()
    [(outcome, text)] = footers(chromium)
    assert outcome == "success", text
    if protocol != "aisdk":  # the AI SDK's finish has no usage
        assert re.search(r"usage: .*3.*11", text), text
    assert not chromium.find_element(By.ID, "message").is_enabled()
    assert chromium.find_element(By.ID, "watch").get_attribute("value") == f"sse {protocol}"
    assert (hub.client_count, hub.stats()["sse_streams"]) == (1, 1)  # no WebSocket
    log = chromium.get_log("browser")
    assert [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")] == []


@pytest.mark.browser
def test_the_watch_picker_switches_to_sse_and_the_token_goes_along(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Picked in the page, SSE replaces the WebSocket and goes into the URL; with
    authentication the stream gets the page's token as ``?token=`` (else: 401)."""
    hub = hub_factory(authenticate=JWTAuthenticator(secret=SECRET))
    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=pick#token={token(watch=['pick'])}")
    wait(chromium, lambda _: hub.client_count == 1, "the page's WebSocket")
    Select(chromium.find_element(By.ID, "watch")).select_by_visible_text("SSE AI SDK")
    watched(hub)
    until_state(chromium, "open")
    assert hub.client_count == 1  # the WebSocket left
    assert chromium.execute_script("return location.search") == (
        "?agent=pick&transport=sse&protocol=aisdk"
    )
    stream_a_run(hub, "pick")
    wait(chromium, lambda d: footers(d), "the run's end")
    assert said(chromium) == streamed_run()
    assert hub.stats()["sse_refused"] == 0


RECORD_STREAM = """
window.firstSource = session.source;
window.got = [];
session.source.addEventListener('open', () => window.got.push('open'));
session.source.addEventListener('message', (e) => window.got.push(Number(e.lastEventId)));
"""


@pytest.mark.browser
@pytest.mark.parametrize("protocol", ["agentcast", "agui"])
def test_over_sse_a_drop_mid_run_is_resumed_by_the_browser_nothing_missing_or_doubled(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster], protocol: str
) -> None:
    """The server closes the page's stream half-way through a reply and streams on; the
    browser's own ``EventSource`` reconnects with ``Last-Event-ID``: natively the events
    after it come, once; AG-UI's stream restarts the open run from its start (not from the
    channel's first seq: the id was sent), and the page starts that card over."""
    hub = hub_factory()
    with hub.run("drop") as earlier:  # what a resume with no id would replay as well
        earlier.say("earlier")
    open_page(chromium, sse_page(hub.port, "drop", protocol))
    watched(hub)
    wait(chromium, lambda d: footers(d), "the earlier run")
    chromium.execute_script(RECORD_STREAM)
    half = len(WORDS) // 2
    with hub.run("drop") as agent_run, agent_run.message() as reply:
        for word in WORDS[:half]:
            reply.delta(word)
        wait(chromium, lambda d: ("text", "".join(WORDS[:half])) in said(d), "half the reply")
        (client,) = hub._thread.call(hub._core.client_ids)
        hub._thread.call(hub._core.close_client, client, 1000, "test drop")
        wait(chromium, lambda _: hub.stats()["sse_streams"] == 0, "the stream closed")
        for word in WORDS[half:-2]:  # while the page is away
            reply.delta(word)
        wait(chromium, lambda _: hub.stats()["sse_opened"] == 2, "the browser's reconnect")
        watched(hub)
        for word in WORDS[-2:]:
            reply.delta(word)
    wait(chromium, lambda d: len(footers(d)) == 2, "the run's end")
    assert said(chromium) == [("text", "earlier"), ("text", "".join(WORDS))]
    assert len(chromium.find_elements(By.CSS_SELECTOR, ".run")) == 2
    assert [outcome for outcome, _ in footers(chromium)] == ["success", "success"]
    assert hub.stats()["sse_opened"] == 2
    assert chromium.execute_script("return session.source === window.firstSource")
    got = chromium.execute_script("return window.got")
    before, after = got[: got.index("open")], got[got.index("open") + 1 :]
    (_, last_seq_seen), (run_first, run_last) = seq_ranges(chromium)
    assert before and after and after[-1] == run_last, got
    resumed_at = before[-1] + 1 if protocol == "agentcast" else run_first
    assert after[0] == resumed_at, (got, run_first)
    assert run_first == last_seq_seen + 1


@pytest.mark.browser
def test_a_footer_says_how_a_run_ended_with_its_usage(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Runs of another producer (``hub.run``): one with usage, one that raised, one merged
    delta (``from_seq``) appended like any delta, and a replayed event dropped."""
    clients: list[int] = []
    hub = hub_factory(on_connect=clients.append)
    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=a")
    wait(chromium, lambda _: bool(clients), "the page's connection")
    (client,) = clients
    hub.subscribe(client, "a")
    with hub.run("a") as done:
        done.say("first")
        done.end(usage={"input_tokens": 3, "output_tokens": 5})
    with contextlib.suppress(RuntimeError), hub.run("a") as failed:
        failed.say("second")
        raise RuntimeError("the model went away")
    wait(chromium, lambda d: len(footers(d)) == 2, "two footers")
    (ok, ok_text), (error, error_text) = footers(chromium)
    assert ok == "success" and "usage: input_tokens 3, output_tokens 5" in ok_text, ok_text
    assert error == "error" and "RuntimeError: the model went away" in error_text, error_text
    frames = [
        {"type": "run_start", "run_id": "r", "seq": 7},
        {"type": "message_start", "message_id": "m", "role": "assistant", "kind": "text", "seq": 8},
        {"type": "message_delta", "message_id": "m", "delta": "Hel", "seq": 9},
        {"type": "message_delta", "message_id": "m", "delta": "lo, wor", "from_seq": 10, "seq": 12},
        {"type": "message_delta", "message_id": "m", "delta": "lo, wor", "seq": 12},  # again
        {"type": "message_delta", "message_id": "m", "delta": "ld", "seq": 13},
        {"type": "message_end", "message_id": "m", "seq": 14},
        {"type": "run_end", "run_id": "r", "outcome": "cancelled", "seq": 15},
    ]
    for frame in frames:
        hub.send_json(client, orjson.dumps({"channel": "a", **frame}))
    wait(chromium, lambda d: len(footers(d)) == 3, "the third run's footer")
    assert said(chromium) == [("text", "first"), ("text", "second"), ("text", "Hello, world")]
    assert footers(chromium)[2][0] == "cancelled"
    assert seq_ranges(chromium)[2] == (7, 15)


@pytest.mark.browser
def test_two_pages_on_one_agent_both_see_the_stream(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    url = f"http://127.0.0.1:{agent_server.port}/?agent=shared"
    open_page(chromium, url)
    first = chromium.current_window_handle
    chromium.switch_to.new_window("tab")
    open_page(chromium, url)
    wait(chromium, lambda d: d.find_element(By.ID, "clients").text == "2", "client count 2")
    say(chromium, "to both")
    chromium.switch_to.window(first)
    until_reply(chromium, "to both")
    assert shown(chromium)[:-1] == [("you", "to both"), *demo_reply("to both")]
    assert [outcome for outcome, _ in footers(chromium)] == ["success"]


@pytest.mark.browser
def test_server_text_is_shown_as_text_never_as_markup(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    attack = "<img src=x onerror=\"document.title='owned'\"><b>bold</b>"
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    say(chromium, attack)
    assert chromium.find_elements(By.CSS_SELECTOR, "#log img, #log b") == []
    assert chromium.title != "owned"
    assert said(chromium) == demo_reply(attack)


def talk(port: int, *exchanges: tuple[str, str]) -> None:
    """(agent, text) exchanges of another client, each to its agent_response_end."""

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}/", 1) as (client,):
            for agent, text in exchanges:
                await client.send(orjson.dumps(user_message(text, agent)).decode())
                while orjson.loads(await client.recv())["type"] != "agent_response_end":
                    pass

    run(scenario())


def contiguous(ranges: list[tuple[int, int]]) -> bool:
    """Whether runs' seq ranges follow each other from 1 with no gap."""
    return [first for first, _ in ranges] == [1, *(last + 1 for _, last in ranges[:-1])]


@pytest.mark.browser
def test_agent_in_the_query_opens_that_agent_its_history_then_only_its_messages(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    talk(agent_server.port, ("alpha", "said earlier"))
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=alpha")
    assert chromium.find_element(By.ID, "agent").get_attribute("value") == "alpha"
    assert chromium.find_element(By.ID, "status-agent").text == "alpha"
    until_reply(chromium, "said earlier")  # the kept history, replayed from seq 1
    talk(agent_server.port, ("beta", "for beta"), ("alpha", "for alpha"))
    until_reply(chromium, "for alpha")
    assert said(chromium) == [*demo_reply("said earlier"), *demo_reply("for alpha")]
    assert contiguous(seq_ranges(chromium)), seq_ranges(chromium)
    assert str(seq_ranges(chromium)[-1][1]) == last_seq(chromium)


@pytest.mark.browser
def test_another_agent_typed_into_the_picker_replaces_the_first(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=one")
    say(chromium, "to one")
    picker = chromium.find_element(By.ID, "agent")
    picker.clear()
    picker.send_keys("two", Keys.ENTER)
    wait(chromium, lambda d: d.find_element(By.ID, "status-agent").text == "two", "agent two")
    assert chromium.execute_script("return location.search") == "?agent=two"
    say(chromium, "to two")
    talk(agent_server.port, ("one", "one again"), ("two", "two again"))
    until_reply(chromium, "two again")
    assert shown(chromium)[0] == ("you", "to two")
    assert said(chromium) == [*demo_reply("to two"), *demo_reply("two again")]
    assert contiguous(seq_ranges(chromium)), seq_ranges(chromium)


@pytest.mark.browser
def test_a_restarted_server_on_the_same_port_is_reconnected_to_and_counted_anew(
    chromium: WebDriver,
) -> None:
    """No backplane: the new server numbers the agent from 1 again, and the page says so."""
    port = free_port()
    server = AgentServer(port=port).start()
    try:
        open_page(chromium, f"http://127.0.0.1:{port}/?agent=demo")
        say(chromium, "before")
        server.stop()
        wait(chromium, lambda d: state(d)[0] == "reconnecting", "the page to notice the drop")
        assert "closed 1001" in state(chromium)[1]
        server = AgentServer(port=port).start()
        until_state(chromium, "open")
        wait(chromium, lambda d: any("started again" in n for n in notices(d)), "the notice")
        say(chromium, "after")
    finally:
        server.stop()
    assert said(chromium) == [*demo_reply("before"), *demo_reply("after")]
    (first_from, _), (second_from, second_to) = seq_ranges(chromium)
    assert (first_from, second_from, str(second_to)) == (1, 1, last_seq(chromium))


@pytest.mark.browser
def test_reconnects_back_off_exponentially_with_jitter(chromium: WebDriver) -> None:
    """Each wait is drawn from [ceiling / 2, ceiling], the ceiling doubling from 0.5 s."""
    with AgentServer(port=0) as server:
        open_page(chromium, f"http://127.0.0.1:{server.port}/?agent=demo")
        chromium.execute_script(
            "window.waits = [];"
            "new MutationObserver(() => window.waits.push("
            "  Number(document.getElementById('state').dataset.retryMs)))"
            ".observe(document.getElementById('state'),"
            "  {attributes: true, attributeFilter: ['data-retry-ms']});"
        )
    waits = wait(
        chromium,
        lambda d: (w := d.execute_script("return window.waits")) and len(w) >= 4 and w,
        "four reconnect attempts",
    )[:4]
    ceilings = [500, 1000, 2000, 4000]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert len({round(w / c, 2) for w, c in zip(waits, ceilings, strict=True)}) > 1, waits


@pytest.mark.browser
def test_a_restarted_server_with_a_backplane_resumes_with_nothing_missing_or_doubled(
    chromium: WebDriver, redis_server: RedisServer
) -> None:
    """Redis keeps the agent's numbering and history over the restart: the run another
    process streamed while the page was away is replayed once, then the conversation
    goes on."""
    port = free_port()

    def start() -> AgentServer:
        return AgentServer(port=port, backplane=redis_server.url).start()

    server = start()
    try:
        open_page(chromium, f"http://127.0.0.1:{port}/?agent=demo")
        say(chromium, "before")
        server.stop()
        wait(chromium, lambda d: state(d)[0] == "reconnecting", "the page to notice the drop")
        with Publisher(redis_server.url) as publisher:  # said while no server runs
            with publisher.run("demo") as away:
                away.say("while away 1")
                with away.message() as streamed:
                    for piece in ("while ", "away ", "2"):
                        streamed.delta(piece)
            assert publisher.flush()
        server = start()
        until_state(chromium, "open")
        wait(chromium, lambda d: len(footers(d)) == 2, "the replay of the run while away")
        say(chromium, "after")
    finally:
        server.stop()
    away_texts = [("text", "while away 1"), ("text", "while away 2")]
    assert said(chromium) == [*demo_reply("before"), *away_texts, *demo_reply("after")]
    assert contiguous(seq_ranges(chromium)), seq_ranges(chromium)
    assert not any("started again" in n for n in notices(chromium))


def event_frame(seq: int, text: str, channel: str = "a") -> bytes:
    """A whole message event numbered ``seq``, as the native protocol sends it."""
    event = {"type": "message", "message_id": f"m{seq}", "role": "assistant", "kind": "text"}
    return orjson.dumps({**event, "channel": channel, "seq": seq, "content": text})


@pytest.mark.browser
def test_a_skip_is_fetched_again_on_a_new_connection_and_shown_in_order_once(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """A plain Broadcaster whose frames to the page the test writes: the page fell behind
    (``skipped`` 3-4) and 5 came after the notice on that connection; the page leaves it
    and resumes after 2 on a new one, which replays 3 to 5 in order, then 6 comes live."""
    clients: list[int] = []
    requests: list[tuple[int, dict[str, Any]]] = []
    hub = hub_factory(
        on_connect=clients.append,
        on_message=lambda client, data: requests.append((client, orjson.loads(data))),
    )

    def asked(client: int, since: int) -> None:
        wanted = (client, {"type": "subscribe", "channel": "a", "since": since})
        wait(chromium, lambda _: wanted in requests, f"a subscribe since {since}")

    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=a")
    wait(chromium, lambda _: bool(clients), "the page's connection")
    first = clients[0]
    asked(first, 0)
    for seq in (1, 2):
        hub.send_json(first, event_frame(seq, f"message {seq}"))
    hub.send_json(first, skipped_notice(2, [("a", 3, 4)]))
    hub.send_json(first, event_frame(5, "message 5"))  # the live tail: left for the resume
    wait(chromium, lambda _: len(clients) == 2, "a new connection")
    second = clients[1]
    asked(second, 2)
    for seq in (3, 4, 5, 6):
        hub.send_json(second, event_frame(seq, f"message {seq}"))
    wait(chromium, lambda d: len(said(d)) == 6, "six messages")
    assert said(chromium) == [("text", f"message {seq}") for seq in range(1, 7)]
    assert last_seq(chromium) == "6"
    assert any("you fell behind" in n for n in notices(chromium))


@pytest.mark.browser
def test_each_gap_notice_is_read_by_its_code(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """Lost broadcasts (even with their numbering restarted) and a trimmed history leave
    the agent's count alone; only ``channel_restarted`` for this agent restarts it."""
    clients: list[int] = []
    hub = hub_factory(on_connect=clients.append)
    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=a")
    wait(chromium, lambda _: bool(clients), "the page's connection")
    (client,) = clients
    for seq in (1, 2):
        hub.send_json(client, event_frame(seq, f"m{seq}"))
    hub.send_json(client, broadcasts_lost(5, 0))
    hub.send_json(client, resume_gap("a", 2, 2, 2))  # nothing lost after 2: a trim notice
    wait(chromium, lambda d: len(notices(d)) == 2, "two notices")
    assert last_seq(chromium) == "2"
    hub.send_json(client, channel_restarted("b", 9))  # another agent's
    hub.send_json(client, channel_restarted("a", 2))
    wait(chromium, lambda d: any("started again" in n for n in notices(d)), "the restart")
    assert last_seq(chromium) == "none"
    assert sum("started again" in n for n in notices(chromium)) == 1
    hub.send_json(client, event_frame(1, "numbered anew"))
    wait(chromium, lambda d: ("text", "numbered anew") in said(d), "the first of the new count")


@pytest.mark.browser
def test_the_log_keeps_the_newest_thousand_cards(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """A page left open on a busy agent stays bounded: the oldest cards go first."""
    clients: list[int] = []
    hub = hub_factory(on_connect=clients.append)
    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=a")
    wait(chromium, lambda _: bool(clients), "the page's connection")
    for seq in range(1, 1011):
        hub.send_json(clients[0], event_frame(seq, f"m{seq}"))
    wait(chromium, lambda d: last_seq(d) == "1010", "the last message")
    kept = said(chromium)
    assert (len(kept), kept[0], kept[-1]) == (1000, ("text", "m11"), ("text", "m1010"))


@pytest.mark.browser
def test_token_from_the_fragment_is_used_and_a_bad_one_is_shown_as_refused(
    chromium: WebDriver,
) -> None:
    authenticate = JWTAuthenticator(secret=SECRET)
    with AgentServer(port=0, authenticate=authenticate) as server:
        base = f"http://127.0.0.1:{server.port}/?agent=demo"
        chromium.get(f"{base}#token=forged")
        until_state(chromium, "unauthorized")
        assert state(chromium)[1] == "token refused: enter a valid token"
        field = chromium.find_element(By.ID, "token")
        assert field.is_displayed()
        field.send_keys(token(agents=["demo"]), Keys.ENTER)
        until_state(chromium, "open")
        say(chromium, "typed token")

        chromium.get("about:blank")
        open_page(chromium, f"{base}#token={token(agents=['demo'])}")
        say(chromium, "fragment token")
        chromium.get("about:blank")
        open_page(chromium, f"{base}#token={token(agents=['other'])}")
        wait(chromium, lambda d: any("forbidden" in n for n in notices(d)), "forbidden")


@pytest.mark.browser
def test_at_the_root_the_page_offers_the_demo_agent_and_one_click_opens_it(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    """No agent in the URL: the field is off, and the page says what to do to turn it on."""
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/")
    field = chromium.find_element(By.ID, "message")
    placeholder = field.get_attribute("placeholder") or ""
    assert not field.is_enabled() and "try demo" in placeholder, placeholder
    offer = chromium.find_element(By.ID, "try-demo")
    assert offer.is_displayed() and "demo" in offer.text, offer.text
    offer.click()
    wait(chromium, lambda d: d.find_element(By.ID, "status-agent").text == "demo", "agent demo")
    assert chromium.execute_script("return location.search") == "?agent=demo"
    assert chromium.find_element(By.ID, "agent").get_attribute("value") == "demo"
    say(chromium, "first words")
    assert said(chromium) == demo_reply("first words")


def field_refused(driver: WebDriver) -> bool:
    """Whether the message field is off and says the agent is not allowed."""
    field = driver.find_element(By.ID, "message")
    return not field.is_enabled() and "not allowed" in (field.get_attribute("placeholder") or "")


def open_agent(driver: WebDriver, agent: str) -> None:
    """Type ``agent`` into the picker; until the page has opened it."""
    picker = driver.find_element(By.ID, "agent")
    picker.clear()
    picker.send_keys(agent, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "status-agent").text == agent, f"agent {agent}")


@pytest.mark.browser
def test_an_agent_the_token_may_not_read_turns_the_field_off_until_another_is_opened(
    chromium: WebDriver,
) -> None:
    with AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)) as server:
        base = f"http://127.0.0.1:{server.port}/?agent=other"
        open_page(chromium, f"{base}#token={token(agents=['demo'])}")
        wait(chromium, field_refused, "the field off, saying why")
        assert notices(chromium) == ["forbidden: not allowed to read this agent (other)"]
        open_agent(chromium, "demo")
        say(chromium, "allowed")
        assert shown(chromium)[:-1] == [("you", "allowed"), *demo_reply("allowed")]


@pytest.mark.browser
def test_a_line_the_token_may_not_say_is_marked_refused_and_the_field_turned_off(
    chromium: WebDriver,
) -> None:
    """Read allowed, talk not: the page learns it from the line's refusal. The line is
    marked refused (not a step in flight that never ends) and nothing more can be typed
    to that agent; another agent the token allows works as before."""
    with AgentServer(port=0, authenticate=JWTAuthenticator(secret=SECRET)) as server:
        rights = token(agents=["demo"], watch=["other"])
        open_page(chromium, f"http://127.0.0.1:{server.port}/?agent=other#token={rights}")
        field = chromium.find_element(By.ID, "message")
        field.send_keys("not mine to say", Keys.ENTER)
        wait(chromium, field_refused, "the field off, saying why")
        (step,) = chromium.find_elements(By.CSS_SELECTOR, "#log .run")
        assert step.get_attribute("class") == "run refused"
        assert shown(chromium) == [
            ("you", "not mine to say"),
            ("foot", "refused", "refused · not allowed to talk to this agent", None),
        ]
        assert notices(chromium) == ["forbidden: not allowed to talk to this agent (other)"]
        assert server.hub.stats()["forbidden"] == 1
        open_agent(chromium, "demo")
        say(chromium, "mine to say")
        assert said(chromium) == demo_reply("mine to say")


STEPS = """
const log = document.getElementById('log').cloneNode(true);
for (const outcome of log.querySelectorAll('.run-foot .outcome')) outcome.textContent = '';
return [...log.querySelectorAll(':scope > .run')].map(run => run.outerHTML);
"""


def steps(driver: WebDriver) -> list[str]:
    """Each step's card as HTML, but for how long it took (a watcher cannot tell)."""
    return list(driver.execute_script(STEPS))


@pytest.mark.browser
def test_a_watcher_is_shown_the_history_in_the_same_steps_as_the_page_that_typed_it(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    url = f"http://127.0.0.1:{agent_server.port}/?agent=history"
    open_page(chromium, url)
    for text in ("first line", "second line"):
        say(chromium, text)
    typed = steps(chromium)
    chromium.switch_to.new_window("tab")
    open_page(chromium, url)
    wait(chromium, lambda d: len(footers(d)) == 2, "the two steps replayed")
    assert steps(chromium) == typed
    assert [item for item in shown(chromium) if item[0] != "foot"] == [
        ("you", "first line"),
        *demo_reply("first line"),
        ("you", "second line"),
        *demo_reply("second line"),
    ]


@pytest.mark.browser
def test_the_page_over_https_talks_over_wss(
    chromium: WebDriver, certificates: tuple[Path, Path, str]
) -> None:
    certfile, keyfile, _ = certificates
    with AgentServer(port=0, ssl=server_context(str(certfile), str(keyfile))) as server:
        open_page(chromium, f"https://127.0.0.1:{server.port}/?agent=demo")
        say(chromium, "over tls")
        assert chromium.execute_script("return location.protocol") == "https:"


@pytest.mark.browser
def test_screenshot_of_a_conversation_is_not_blank(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    for text in ("hello", "how are you?"):
        say(chromium, text)
    png = chromium.get_screenshot_as_png()
    image = Image.open(io.BytesIO(png))
    assert image.size[0] >= 800 and image.size[1] >= 500
    assert len(png) > 20_000
    colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200  # text, entries and bars, not one fill
    most_common = max(count for count, _ in colors)
    assert most_common < 0.9 * image.size[0] * image.size[1]


# ---- the page in Firefox -------------------------------------------------------------


FIREFOX_PREFS = {
    "marionette.port": None,  # set per run
    "app.update.disabledForTesting": True,
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


@pytest.fixture
def firefox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Marionette]:
    """Headless Firefox driven over Marionette by Mozilla's own client (Debian has no
    geckodriver; Marionette is the protocol geckodriver itself speaks to Firefox). The
    browser is started here and its port awaited, then the client attaches to it."""
    binary, missing = find_firefox()
    if binary is None:
        browsers_used(request.config).skip("Firefox", missing)
        pytest.skip(f"Firefox: {missing}")
    port = free_port()
    prefs = {**FIREFOX_PREFS, "marionette.port": port}
    (tmp_path / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
    )
    command = [str(binary), "--headless", "--marionette", "--no-remote", "--profile"]
    process = subprocess.Popen(
        [*command, str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + WAIT
        while not accepts(port):
            assert process.poll() is None, f"firefox exited with {process.returncode}"
            assert time.monotonic() < deadline, f"firefox did not listen on {port}"
            time.sleep(0.05)
        client = Marionette(host="127.0.0.1", port=port)
        client.start_session()
        version = client.session_capabilities["browserVersion"]
        browsers_used(request.config).started["Firefox"] = f"{version} ({binary})"
        try:
            yield client
        finally:
            client.delete_session()
    finally:
        process.terminate()
        process.wait(10)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def firefox_until(client: Marionette, condition: Callable[[Marionette], Any], what: str) -> None:
    try:
        FirefoxWait(client, timeout=WAIT, interval=0.05).until(condition)
    except Exception:
        body = client.find_element(FirefoxBy.TAG_NAME, "body").text[-1500:]
        raise AssertionError(f"waited {WAIT} s for {what}; Firefox shows:\n{body}") from None


@pytest.mark.browser
def test_the_page_works_in_firefox_and_survives_a_restart(firefox: Marionette) -> None:
    def firefox_state(client: Marionette) -> str:
        return str(client.find_element(FirefoxBy.ID, "state").get_attribute("data-state"))

    def say_in_firefox(text: str, runs: int) -> None:
        firefox_until(firefox, lambda c: firefox_state(c) == "open", "state open")
        firefox.find_element(FirefoxBy.ID, "message").send_keys(text + "\ue007")  # Enter
        firefox_until(
            firefox,
            lambda c: len(c.find_elements(FirefoxBy.CSS_SELECTOR, ".run.done")) == runs,
            f"the run answering {text!r}",
        )

    port = free_port()
    server = AgentServer(port=port).start()
    try:
        firefox.navigate(f"http://127.0.0.1:{port}/?agent=fox")
        say_in_firefox("hello from firefox", 1)
        server.stop()
        firefox_until(firefox, lambda c: firefox_state(c) == "reconnecting", "the drop")
        server = AgentServer(port=port).start()
        say_in_firefox("after the restart", 2)
    finally:
        server.stop()
    replies = firefox.execute_script(
        "return [...document.querySelectorAll('#log .entry.kind-text')]"
        ".map(e => [Number(e.dataset.seq) > 0, e.querySelector('.text').textContent])"
    )
    assert replies == [
        [True, "You said: hello from firefox"],
        [True, "You said: after the restart"],
    ]
    first_seqs = firefox.execute_script(
        "return [...document.querySelectorAll('#log .run-foot')].map(e => e.dataset.seqs)"
    )
    assert [seqs.split()[0] for seqs in first_seqs] == ["1", "1"]  # counted anew


# ---- which browsers ran ----------------------------------------------------------------


def test_firefox_is_a_binary_found_where_it_is_never_a_wrapper_script(tmp_path: Path) -> None:
    """Ubuntu's ``firefox`` is a shell script that starts (or installs) a snap: passed
    over; a ``firefox-esr`` on PATH linking to a binary is taken, as the binary."""
    binary = tmp_path / "lib" / "firefox-esr"
    binary.parent.mkdir()
    binary.write_bytes(Path(sys.executable).resolve().read_bytes())  # any ELF executable
    binary.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "firefox"
    wrapper.write_text('#!/bin/sh\nexec snap run firefox "$@"\n')
    wrapper.chmod(0o755)
    assert find_firefox({"PATH": str(bin_dir)}, paths=()) == (
        None,
        "not installed (apt-get install -y firefox-esr)",
    )
    (bin_dir / "firefox-esr").symlink_to(binary)
    assert find_firefox({"PATH": str(bin_dir)}, paths=()) == (binary, "")
    own = {"PATH": str(bin_dir), "AGENTCAST_FIREFOX": str(wrapper)}
    assert find_firefox(own, paths=()) == (
        None,
        f"AGENTCAST_FIREFOX={wrapper} is not an executable binary",
    )


def test_the_summary_names_each_browser_run_and_each_missing_with_its_skips() -> None:
    used = BrowsersUsed()
    used.started["Chromium"] = "156.0.1"
    used.skip("Firefox", "not installed (apt-get install -y firefox-esr)")
    assert used.summary() == (
        "page tests ran in: Chromium 156.0.1; Firefox: not installed"
        " (apt-get install -y firefox-esr), its 1 test skipped"
    )


def firefox_test_run(environ: dict[str, str]) -> str:
    """The output of a pytest run of this module's Firefox test alone."""
    test = "tests/test_page.py::test_the_page_works_in_firefox_and_survives_a_restart"
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q"],
        cwd=REPO,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout[-3000:]
    return finished.stdout


def test_a_run_without_firefox_skips_its_test_and_says_so() -> None:
    output = firefox_test_run({"AGENTCAST_FIREFOX": "/nonexistent/firefox"})
    assert "1 skipped" in output, output
    assert (
        "page tests ran in: no browser; Firefox: AGENTCAST_FIREFOX=/nonexistent/firefox is not an"
        " executable binary, its 1 test skipped"
    ) in output, output


@pytest.mark.browser
def test_a_run_with_firefox_names_it_and_its_version(request: pytest.FixtureRequest) -> None:
    binary, missing = find_firefox()
    if binary is None:
        browsers_used(request.config).skip("Firefox", missing)
        pytest.skip(f"Firefox: {missing}")
    output = firefox_test_run({})
    assert "1 passed" in output, output
    assert re.search(rf"page tests ran in: Firefox \d+\.\d+\S* \({binary}\)", output), output
