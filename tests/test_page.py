"""The live page (``GET /``): its files and headers over real sockets, and the page itself
in a real browser, headless Chromium from Debian's ``chromium`` and ``chromium-driver``
driven by selenium, against real agentcast servers on 127.0.0.1.

The browser tests are marked ``browser``; without Chromium they fail saying what to
install (CI installs it: see the README's test command).
"""

from __future__ import annotations

import http.client
import io
import json
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
from selenium.webdriver.support.ui import WebDriverWait

with warnings.catch_warnings():  # mozinfo calls distro.linux_distribution() at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver import By as FirefoxBy
    from marionette_driver import Wait as FirefoxWait
    from marionette_driver.marionette import Marionette

from agentcast import Broadcaster, Publisher
from agentcast.memgpt import protocol
from agentcast.memgpt.app import AgentServer
from agentcast.notices import GAP_CODES, broadcasts_lost, channel_restarted, resume_gap
from agentcast.notices import skipped as skipped_notice
from agentcast.serve.auth import JWTAuthenticator
from agentcast.serve.page import PAGE_FILES
from agentcast.serve.tls import server_context
from clients import run, user_message, websockets_clients
from redis_server import RedisServer, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FIREFOX = Path("/usr/lib/firefox-esr/firefox-esr")  # the binary, next to application.ini
INSTALL = "apt-get install -y chromium chromium-driver firefox-esr"
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
    assert status == 400 and b"UPGRADE" in body.upper(), (status, body[:200])


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
    assert get(hub.port, "/metrics")[0] == 400  # not here: on the metrics port
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
def browser(certificates: tuple[Path, Path, str]) -> Iterator[WebDriver]:
    """One headless Chromium for the module; each test opens its pages in it."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: {INSTALL}", pytrace=False)
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


def entries(driver: WebDriver) -> list[tuple[str, int | None, str]]:
    """(type, seq, text) of every message shown, in order."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#log .entry')].map(e =>"
        " [e.dataset.type, e.dataset.seq ? Number(e.dataset.seq) : null,"
        " e.querySelector('.text').textContent])"
    )
    return [(kind, seq, text) for kind, seq, text in found]


def notices(driver: WebDriver) -> list[str]:
    return [n.text for n in driver.find_elements(By.CSS_SELECTOR, "#log .notice")]


def say(driver: WebDriver, text: str) -> None:
    """Type ``text`` into the page's message field and press Enter; wait for the reply."""
    field = wait(driver, lambda d: d.find_element(By.ID, "message").is_enabled() and
                 d.find_element(By.ID, "message"), "an enabled message field")  # fmt: skip
    field.send_keys(text, Keys.ENTER)
    until_reply(driver, text)


def until_reply(driver: WebDriver, text: str) -> None:
    wait(
        driver,
        lambda d: ("assistant_message", f"You said: {text}") in [(k, t) for k, _, t in entries(d)],
        f"the reply to {text!r}",
    )


DEMO_TYPES = ["internal_monologue", "function_message", "assistant_message"]


def agent_entries(driver: WebDriver) -> list[tuple[str, int | None, str]]:
    return [e for e in entries(driver) if e[0] != "user"]


@pytest.mark.browser
def test_page_loads_with_no_console_errors(chromium: WebDriver, agent_server: AgentServer) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    wait(chromium, lambda d: d.find_element(By.ID, "clients").text == "1", "client count 1")
    say(chromium, "hello")
    log = chromium.get_log("browser")
    assert [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")] == []


@pytest.mark.browser
def test_a_message_typed_gets_the_demo_agents_reply_grouped_as_one_step(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    say(chromium, "hello there")
    wait(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, ".step.done"), "the step's end")
    step = chromium.find_element(By.CSS_SELECTOR, ".step.done")
    shown = [e.get_attribute("data-type") for e in step.find_elements(By.CSS_SELECTOR, ".entry")]
    assert shown == ["user", *DEMO_TYPES]
    assert agent_entries(chromium) == [
        ("internal_monologue", 1, "The user said 'hello there'; I will echo it back."),
        ("function_message", 2, "Running send_message('hello there')"),
        ("assistant_message", 3, "You said: hello there"),
    ]
    assert chromium.find_element(By.ID, "last-seq").text == "3"


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
    seen = [(kind, seq) for kind, seq, _ in agent_entries(chromium)]
    assert seen == list(zip(DEMO_TYPES, [1, 2, 3], strict=True))


@pytest.mark.browser
def test_server_text_is_shown_as_text_never_as_markup(
    chromium: WebDriver, agent_server: AgentServer
) -> None:
    attack = "<img src=x onerror=\"document.title='owned'\"><b>bold</b>"
    open_page(chromium, f"http://127.0.0.1:{agent_server.port}/?agent=demo")
    say(chromium, attack)
    assert chromium.find_elements(By.CSS_SELECTOR, "#log img, #log b") == []
    assert chromium.title != "owned"
    assert agent_entries(chromium)[-1][2] == f"You said: {attack}"


def talk(port: int, *exchanges: tuple[str, str]) -> None:
    """(agent, text) exchanges of another client, each to its agent_response_end."""

    async def scenario() -> None:
        async with websockets_clients(f"ws://127.0.0.1:{port}/", 1) as (client,):
            for agent, text in exchanges:
                await client.send(orjson.dumps(user_message(text, agent)).decode())
                while orjson.loads(await client.recv())["type"] != "agent_response_end":
                    pass

    run(scenario())


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
    assert [seq for _, seq, _ in entries(chromium)] == [1, 2, 3, 4, 5, 6]
    assert "beta" not in " ".join(text for _, _, text in entries(chromium))


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
    assert entries(chromium)[0] == ("user", None, "to two")
    assert "one" not in " ".join(text for _, _, text in agent_entries(chromium))
    assert [seq for _, seq, _ in agent_entries(chromium)] == [1, 2, 3, 4, 5, 6]


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
    assert [s for _, s, _ in agent_entries(chromium)] == [1, 2, 3, 1, 2, 3]
    assert chromium.find_element(By.ID, "last-seq").text == "3"


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
    """Redis keeps the agent's numbering and history over the restart: what was said
    while the page was away is replayed once, then the conversation goes on."""
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
            for text in ("while away 1", "while away 2"):
                publisher.publish_json(
                    protocol.agent_response("assistant_message", text, "demo"), "demo"
                )
            assert publisher.flush()
        server = start()
        until_state(chromium, "open")
        wait(chromium, lambda d: len(agent_entries(d)) == 5, "the replay of seqs 4 and 5")
        say(chromium, "after")
    finally:
        server.stop()
    assert [(s, t) for _, s, t in agent_entries(chromium)][3:6] == [
        (4, "while away 1"),
        (5, "while away 2"),
        (6, "The user said 'after'; I will echo it back."),
    ]
    assert [s for _, s, _ in agent_entries(chromium)] == list(range(1, 9))
    assert not any("started again" in n for n in notices(chromium))


@pytest.mark.browser
def test_skipped_messages_are_fetched_again_and_shown_in_order_once(
    chromium: WebDriver, hub_factory: Callable[..., Broadcaster]
) -> None:
    """A plain Broadcaster whose frames to the page the test writes: the page fell behind
    (``skipped`` 3-4), 5 came live before the replay it asked for, which overlaps."""
    clients: list[int] = []
    requests: list[dict[str, Any]] = []
    hub = hub_factory(
        on_connect=clients.append, on_message=lambda _, data: requests.append(orjson.loads(data))
    )

    def asked(since: int) -> None:
        wanted = {"type": "subscribe", "agent_id": "a", "since": since}
        wait(chromium, lambda _: wanted in requests, f"a subscribe since {since}")

    def send(*seqs: int) -> None:
        for seq in seqs:
            frame = protocol.agent_response("assistant_message", f"message {seq}", "a", seq)
            hub.send_json(client, frame)

    open_page(chromium, f"http://127.0.0.1:{hub.port}/?agent=a")
    asked(0)
    (client,) = clients
    send(1, 2)
    hub.send_json(client, skipped_notice(2, [("a", 3, 4)]))
    send(5)
    asked(2)
    send(3, 4, 2, 5, 6)  # the replay after 2, then live
    wait(chromium, lambda d: len(agent_entries(d)) == 6, "six messages")
    assert [(seq, text) for _, seq, text in agent_entries(chromium)] == [
        (seq, f"message {seq}") for seq in range(1, 7)
    ]
    assert chromium.find_element(By.ID, "last-seq").text == "6"
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
        hub.send_json(client, protocol.agent_response("assistant_message", f"m{seq}", "a", seq))
    hub.send_json(client, broadcasts_lost(5, 0))
    hub.send_json(client, resume_gap("a", 2, 2, 2))  # nothing lost after 2: a trim notice
    wait(chromium, lambda d: len(notices(d)) == 2, "two notices")
    assert chromium.find_element(By.ID, "last-seq").text == "2"
    hub.send_json(client, channel_restarted("b", 9))  # another agent's
    hub.send_json(client, channel_restarted("a", 2))
    wait(chromium, lambda d: any("started again" in n for n in notices(d)), "the restart")
    assert chromium.find_element(By.ID, "last-seq").text == "none"
    assert sum("started again" in n for n in notices(chromium)) == 1


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
def firefox(tmp_path: Path) -> Iterator[Marionette]:
    """Headless Firefox ESR driven over Marionette by Mozilla's own client (Debian has no
    geckodriver; Marionette is the protocol geckodriver itself speaks to Firefox). The
    browser is started here and its port awaited, then the client attaches to it."""
    if not FIREFOX.exists():
        pytest.fail(f"{FIREFOX} is missing: {INSTALL}", pytrace=False)
    port = free_port()
    prefs = {**FIREFOX_PREFS, "marionette.port": port}
    (tmp_path / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
    )
    command = [str(FIREFOX), "--headless", "--marionette", "--no-remote", "--profile"]
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

    def say_in_firefox(text: str) -> None:
        firefox_until(firefox, lambda c: firefox_state(c) == "open", "state open")
        firefox.find_element(FirefoxBy.ID, "message").send_keys(text + "\ue007")  # Enter
        firefox_until(
            firefox,
            lambda c: f"You said: {text}" in c.find_element(FirefoxBy.ID, "log").text,
            f"the reply to {text!r}",
        )

    port = free_port()
    server = AgentServer(port=port).start()
    try:
        firefox.navigate(f"http://127.0.0.1:{port}/?agent=fox")
        say_in_firefox("hello from firefox")
        server.stop()
        firefox_until(firefox, lambda c: firefox_state(c) == "reconnecting", "the drop")
        server = AgentServer(port=port).start()
        say_in_firefox("after the restart")
    finally:
        server.stop()
    seqs = firefox.execute_script(
        "return [...document.querySelectorAll('#log .entry[data-seq]')]"
        ".map(e => Number(e.dataset.seq))"
    )
    assert seqs == [1, 2, 3, 1, 2, 3]
