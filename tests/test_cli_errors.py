"""Every way a newcomer can get the command line wrong: one line on stderr, exit code 2.

Real processes (``python -m agentcast``); a missing optional dependency is a real
import failure (``tests/without_package.py``), not a mock of agentcast.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import agentcast
from agentcast import cli
from redis_server import free_port

AGENTCAST = [sys.executable, "-m", "agentcast"]
WITHOUT = [sys.executable, str(Path(__file__).with_name("without_package.py"))]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command line (exit code 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["serve", "--port", "abc"],
            "agentcast serve: error: argument --port: expected a port 0-65535, got 'abc'",
        ),
        (
            ["serve", "--port", "70000"],
            "agentcast serve: error: argument --port: expected a port 0-65535, got '70000'",
        ),
        (
            ["serve", "--lag-threshold", "0"],
            "agentcast serve: error: argument --lag-threshold: expected a whole number of at"
            " least 1, got '0'",
        ),
        (
            ["serve", "--chat-api", "api/chat"],
            "agentcast serve: error: chat_api must be a path such as /api/chat, not 'api/chat'",
        ),
        (
            ["serve", "--history", "-5"],
            "agentcast serve: error: argument --history: expected a whole number of at least 0,"
            " got '-5'",
        ),
        (
            ["serve", "--max-clients", "0"],
            "agentcast serve: error: argument --max-clients: expected a whole number of at"
            " least 1, got '0'",
        ),
        (
            ["serve", "--channel-ttl", "-1"],
            "agentcast serve: error: argument --channel-ttl: expected a number above 0, got '-1'",
        ),
        (
            ["serve", "--max-connect-rate", "nan"],
            "agentcast serve: error: argument --max-connect-rate: expected a number of at"
            " least 0, got 'nan'",
        ),
        (
            ["serve", "--metrics-port", "http"],
            "agentcast serve: error: argument --metrics-port: expected a port 0-65535, got 'http'",
        ),
        (
            ["serve", "--backend", "json:dumps"],
            "agentcast serve: error: argument --backend: backend 'json:dumps' cannot be built as"
            " factory(default_interface=interface): missing a required argument: 'obj'",
        ),
        (
            ["client", "--agent-id", "a", "--backoff", "soon"],
            "agentcast client: error: argument --backoff: expected a number of at least 0,"
            " got 'soon'",
        ),
        (
            ["client", "--agent-id", "a", "--retries", "-1"],
            "agentcast client: error: argument --retries: expected a whole number of at least 1,"
            " got '-1'",
        ),
        (
            ["bench", "--messages", "many"],
            "agentcast bench: error: argument --messages: expected a whole number of at least 1,"
            " got 'many'",
        ),
        (
            ["bench", "--size", "10"],
            "agentcast bench: error: argument --size: expected a size of 100-1048576 bytes,"
            " got '10'",
        ),
    ],
)
def test_a_bad_value_names_the_flag_typed_in_one_line(args: list[str], line: str) -> None:
    assert one_line_error(run(*AGENTCAST, *args)) == line


def test_a_backend_that_builds_no_backend_is_one_line() -> None:
    """``dict(default_interface=...)`` builds fine, but has no ``user_message``."""
    assert one_line_error(run(*AGENTCAST, "serve", "--backend", "builtins:dict")) == (
        "agentcast serve: error: argument --backend: backend 'dict' has no create_agent or"
        " user_message method"
        " (a backend needs MemGPT SyncServer's create_agent and user_message)"
    )


def test_bare_agentcast_prints_the_usage_and_a_hint() -> None:
    result = run(*AGENTCAST)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "usage: agentcast [-h] [--version] COMMAND ...",
        "agentcast: error: choose a command: serve, client or bench ('agentcast --help' says"
        " what each does)",
    ]


def test_version() -> None:
    result = run(*AGENTCAST, "--version")
    assert result.returncode == 0
    assert result.stdout == f"agentcast {agentcast.__version__}\n"


@pytest.mark.parametrize("command", [[], ["serve"], ["client"], ["bench"]])
def test_help_has_no_markup(command: list[str]) -> None:
    result = run(*AGENTCAST, *command, "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and "Traceback" not in result.stderr


def _subcommands(argv: list[str]) -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser(argv)
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("name", ["serve", "client", "bench"])
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    subcommand = _subcommands([name])[name]
    formatter = subcommand._get_formatter()
    for action in subcommand._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.dest} has no help"
        if action.default not in (None, False, ""):
            shown = formatter._get_help_string(action) or ""
            assert "default" in shown, f"{name} {action.dest}: {shown!r} hides its default"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["serve"], "--host HOST address to listen on;"),
        (["serve"], "(default: 127.0.0.1)"),
        (["serve"], "--port PORT port to listen on; 0 picks a free one (default: 8282)"),
        (["serve"], "--max-clients N connections served at once;"),
        (["serve"], "(default: no limit)"),
        (["client"], "url the server's ws:// or wss:// URL (default: ws://127.0.0.1:8282/)"),
        (["client"], "--agent-id AGENT_ID the agent to talk to (required)"),
    ],
)
def test_help_of_the_options_a_newcomer_reads_first(command: list[str], words: str) -> None:
    result = run(*AGENTCAST, *command, "--help")
    assert words in " ".join(result.stdout.split())


def test_serve_redis_without_the_redis_extra_names_the_install_line() -> None:
    result = run(*WITHOUT, "redis", "-m", "agentcast", "serve", "--redis", "redis://127.0.0.1:1/0")
    assert one_line_error(result) == (
        "agentcast serve: error: argument --redis: the Redis backplane needs the redis package:"
        ' pip install ".[redis]"'
    )


def test_a_bad_auth_key_is_one_line_before_any_worker_starts(tmp_path: Path) -> None:
    """Checked by the parent, like a certificate: not by each worker, dying in turn."""
    key = tmp_path / "secret"
    key.write_bytes(b"short")
    key.chmod(0o600)  # else serve warns
    serve = ["serve", "--port", str(free_port()), "--auth-secret-file", str(key)]
    workers = ["--workers", "2", "--redis", "redis://127.0.0.1:1/0"]
    line = (
        f"agentcast serve: error: cannot load the --auth-* key: {key}:"
        " an HS256 secret must be at least 32 bytes"
    )
    assert one_line_error(run(*AGENTCAST, *serve)) == line
    assert one_line_error(run(*AGENTCAST, *serve, *workers)) == line


def test_plot_without_matplotlib_names_the_source_install_line(tmp_path: Path) -> None:
    result = run(
        *WITHOUT, "matplotlib", "-m", "agentcast", "bench", "--plot", str(tmp_path / "p.png")
    )
    assert one_line_error(result) == (
        'agentcast bench: error: --plot needs the matplotlib package: pip install ".[bench]"'
    )


WITHOUT_REDIS = """
from agentcast import {name}
try:
    {call}
except ImportError as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
    print("chained:", exc.__cause__ is not None or not exc.__suppress_context__)
"""


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("Publisher", "Publisher('redis://127.0.0.1:1/0')"),
        ("AsyncPublisher", "AsyncPublisher('redis://127.0.0.1:1/0')"),
        ("Broadcaster", "Broadcaster(port=0, backplane='redis://127.0.0.1:1/0')"),
    ],
)
def test_the_python_api_without_the_redis_extra_raises_one_clear_import_error(
    name: str, call: str
) -> None:
    result = run(*WITHOUT, "redis", "-c", WITHOUT_REDIS.format(name=name, call=call))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'MissingExtra: the Redis backplane needs the redis package: pip install ".[redis]"',
        "chained: False",
    ]


def test_publisher_against_an_unreachable_redis_is_one_exception() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = run(
        sys.executable, "-c", f"from agentcast import Publisher; Publisher({url!r}).start()"
    )
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "During handling" not in result.stderr and "direct cause" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"ConnectionError: cannot reach Redis at {url}"
    )


def test_bench_without_a_peer_library_names_the_source_install_line() -> None:
    result = run(
        *WITHOUT, "socketify", "-m", "agentcast", "bench", "--servers", "socketify",
        "--clients", "1", "--messages", "100", "--rounds", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "skipped socketify: socketify is not available here (No module named 'socketify');"
        ' pip install ".[bench]"'
    ) in result.stdout.splitlines()


def test_backend_modules_are_found_in_the_current_directory(tmp_path: Path) -> None:
    """As the ``agentcast`` console script runs: its directory is sys.path[0], not the
    current one, where ``--backend mypkg.server:SyncServer``'s package sits."""
    launcher = tmp_path / "bin" / "agentcast"
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom agentcast.cli import main\nsys.exit(main())\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "server.py").write_text(
        "class SyncServer:\n    def __init__(self, default_interface):\n        pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(launcher),
            "serve",
            "--port",
            "0",
            "--backend",
            "mypkg.server:SyncServer",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Found and imported: refused only for what it lacks, not as a module nowhere.
    assert one_line_error(result) == (
        "agentcast serve: error: argument --backend: backend 'SyncServer' has no"
        " create_agent or user_message method"
        " (a backend needs MemGPT SyncServer's create_agent and user_message)"
    )
