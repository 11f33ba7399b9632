"""The package surface: exports, the compiled core in use, clear errors when it is not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agentcast
from agentcast import _ext, _fanout, _history, _latency, _opqueue, _server, _sink, _slow

EXTENSIONS = (_sink, _opqueue, _history, _slow, _latency, _fanout, _server)


def test_exports() -> None:
    assert sorted(agentcast.__all__) == [
        "AgentServer",
        "AsyncPublisher",
        "AsyncWebSocketInterface",
        "Broadcaster",
        "Client",
        "Publisher",
        "SyncClient",
        "SyncWebSocketInterface",
    ]
    for name in agentcast.__all__:
        assert getattr(agentcast, name).__module__.startswith("agentcast.")


def test_the_clients_load_websockets_only_when_asked_for() -> None:
    """A server process imports ``agentcast`` and never a WebSocket client library."""
    code = (
        "import sys, agentcast\n"
        "print('websockets' in sys.modules, 'agentcast.client.stream' in sys.modules)\n"
        "agentcast.Client\n"
        "print('websockets' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        agentcast.Nothing  # noqa: B018


LAYERS = ("serve", "memgpt", "client", "backplane", "bench")


def test_the_package_shows_its_layers() -> None:
    """Modules live in their layer's package; at the top only what every layer shares."""
    package = Path(agentcast.__file__).parent
    assert all((package / layer / "__init__.py").exists() for layer in LAYERS)
    top = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_"))
    assert top == ["argtypes", "cli", "extras", "notices", "printable"], top


def test_the_benchmark_is_not_imported_by_the_server_or_the_client() -> None:
    """``agentcast bench`` (a third of the code) loads only when it runs."""
    code = (
        "import sys, agentcast, agentcast.cli, agentcast.client.run\n"
        "agentcast.cli._parser(['serve'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('agentcast.bench',"
        " 'agentcast._receiver'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_compiled_core_is_the_one_in_use() -> None:
    for module in EXTENSIONS:
        assert Path(module.__file__).suffix == ".so", module.__file__
    assert _ext.FanoutCore.__module__ == "agentcast._fanout"
    assert _ext.MemorySink.__module__ == "agentcast._sink"
    assert _ext.ServerListener.__module__ == "agentcast._server"


def test_stubs_ship_with_the_package() -> None:
    package = Path(agentcast.__file__).parent
    assert (package / "py.typed").exists()
    for module in EXTENSIONS:
        assert (package / f"{module.__name__.rpartition('.')[2]}.pyi").exists(), module


def test_missing_extension_says_how_to_rebuild() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'agentcast._fanout':\n"
        "            raise ImportError('simulated missing build')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import agentcast\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "compiled core could not be imported" in result.stderr
    assert "pip install" in result.stderr


def test_stale_extension_says_how_to_rebuild(tmp_path: Path) -> None:
    sources = Path(_ext.CHECKOUT_EXT_DIR)
    if not sources.exists():
        sources = Path(__file__).resolve().parents[1] / "ext" / "agentcast"
    for path in sources.glob("*.p[xy][xd]"):
        shutil.copy(path, tmp_path / path.name)
    _ext.check_fresh(tmp_path)  # identical sources: fresh
    with (tmp_path / "_fanout.pyx").open("a") as pyx:
        pyx.write("\n# edited after the build\n")
    with pytest.raises(ImportError, match=r"stale.*pip install"):
        _ext.check_fresh(tmp_path)
