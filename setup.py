"""Build the Cython extensions under ext/ into the agentcast package.

Build switches are environment variables, so they work through ``pip install``:
  AGENTCAST_DEBUG=1     no optimisation, debug symbols, bounds and negative-index checks on
  AGENTCAST_ANNOTATE=1  write ext/agentcast/*.html (cython -a) next to the sources
"""

import importlib.util
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT_DIR = HERE / "ext" / "agentcast"
DEBUG = os.environ.get("AGENTCAST_DEBUG") == "1"
ANNOTATE = os.environ.get("AGENTCAST_ANNOTATE") == "1"


def load_source_hash():
    """The package's own hash function, loaded by path: the package is not importable yet."""
    spec = importlib.util.spec_from_file_location(
        "_agentcast_sourcehash", HERE / "src" / "agentcast" / "_sourcehash.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_hash


# Compiled into the extension, so a stale build is detected at import.
SOURCE_HASH = load_source_hash()(EXT_DIR)


def extension(name: str) -> Extension:
    return Extension(
        f"agentcast.{name}",
        [f"ext/agentcast/{name}.pyx"],
        define_macros=[("AGENTCAST_SOURCE_HASH", f'"{SOURCE_HASH}"')],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O2"],
    )


# One extension per .pyx; they share code by cimport through their .pxd files
# (_buffer.pxd is inline helpers only, compiled into the modules that use it).
MODULES = ["_sink", "_frames", "_opqueue", "_history", "_slow", "_latency", "_backlog", "_fanout", "_server", "_receiver"]


setup(
    ext_modules=cythonize(
        [extension(name) for name in MODULES],
        include_path=["ext"],
        annotate=ANNOTATE,
        # The only place these are set: a ``# cython:`` header in a source would override
        # them (tests/test_core_split.py checks that none does).
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
