"""The import graph: what ``import asyncworkers`` (and the first use of a name) loads.

Each check runs in a fresh interpreter, since this one has imported everything already.
What costs are measured in ``benchmarks/icount.py`` (the ``import`` paths), never here: these
tests only say which modules are loaded, which does not depend on the machine.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

import asyncworkers as aw
from _helpers import SUBPROCESS_GUARD

# Loaded only by the code that uses them: the progress display, the load generator, the
# PostgreSQL store, the version lookup, the SQLite store and the process pool.
HEAVY = (
    "rich",
    "aiohttp",
    "asyncpg",
    "importlib.metadata",
    "sqlite3",
    "asyncworkers.store",
    "asyncworkers.ops",
    "asyncworkers.loadgen",
    "asyncworkers.cli",
    "anyio.to_process",
    "pickle",
)


def loaded_after(code: str) -> set[str]:
    """The modules in sys.modules after *code* runs in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_asyncworkers_loads_neither_asyncio_nor_anyio_nor_anything_heavy() -> None:
    loaded = loaded_after("import asyncworkers")
    assert {"asyncio", "anyio", *HEAVY} & loaded == set()


def test_the_first_use_of_the_runtime_loads_the_core_and_nothing_heavy() -> None:
    loaded = loaded_after(
        "import asyncworkers as aw\n"
        "aw.Runtime, aw.SyncRuntime, aw.run, aw.CancellationToken, aw.Retry, aw.dispatch"
    )
    assert {"asyncio", "anyio", "asyncworkers._core._runtime"} <= loaded
    assert set(HEAVY) & loaded == set()


def test_the_command_lines_help_loads_neither_asyncio_nor_anyio_nor_anything_heavy() -> None:
    # What `asyncworkers --help` runs: every command's parser, no command.
    loaded = loaded_after("from asyncworkers.cli import build_parser\nbuild_parser().format_help()")
    heavy = {"asyncio", "anyio", "logging", "rich", "aiohttp", "asyncpg", "sqlite3"}
    runs = {"asyncworkers.store._manager", "asyncworkers.loadgen._client", "importlib.metadata"}
    assert (heavy | runs) & loaded == set()
    # The light parts the parsers read: the store's field limits, the load generator's
    # option parsers.
    assert {"asyncworkers.store._fields", "asyncworkers.loadgen._config"} <= loaded


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("store", "asyncworkers.store"),
        ("ops", "asyncworkers.ops"),
        ("Report", "asyncworkers._dispatch._report"),
    ],
)
def test_a_name_loads_its_module_on_first_use(name: str, module: str) -> None:
    assert module not in loaded_after("import asyncworkers")
    assert module in loaded_after(f"import asyncworkers\nasyncworkers.{name}")


def test_dispatch_stays_the_function_when_its_module_is_imported_first() -> None:
    loaded = loaded_after(
        "import asyncworkers.dispatch\n"
        "import asyncworkers as aw\n"
        "assert callable(aw.dispatch) and aw.dispatch.__module__ == 'asyncworkers.dispatch'\n"
        "from asyncworkers.dispatch import Report\n"
        "assert Report is aw.Report"
    )
    assert "asyncworkers._dispatch._report" in loaded


def test_lazy_names_are_the_objects_of_their_modules() -> None:
    from asyncworkers._core._runtime import Runtime
    from asyncworkers._core._sync import SyncRuntime

    assert aw.Runtime is Runtime
    assert aw.SyncRuntime is SyncRuntime
    assert set(aw.__all__) <= set(dir(aw))
    assert {"store", "ops"} <= set(dir(aw))
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        aw.nothing_here  # type: ignore[attr-defined]  # noqa: B018


def test_the_version_literal_is_the_installed_distributions() -> None:
    assert aw.__version__ == importlib.metadata.version("asyncworkers")
