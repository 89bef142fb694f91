"""Development sessions: ``nox`` runs tests, lint and typecheck; ``nox -s NAME`` runs one.

Each session installs the project into its own virtualenv, made with the interpreter that
runs nox (reuse them with ``nox -r``).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]

LINT_PATHS = ["src", "tests", "benchmarks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; every async test runs on asyncio and on uvloop (tests/conftest.py).

    Arguments after ``--`` go to pytest: ``nox -s tests -- -x -k cancel``.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the sources, tests, benchmarks and this file."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src and tests, as configured in pyproject.toml."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Run every ``python`` example in README.md and docs/*.md, and check the API reference
    covers ``asyncworkers.__all__`` (tests/test_docs.py)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", "tests/test_docs.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks: the runtime and its peers side by side. Never part of the tests.

    The first, ``benchmarks/icount.py --all``, rewrites the figures table of README.md and
    docs/benchmarks.md."""
    session.install("-e", ".[bench]")
    # Instructions per job and per import beside their peers (valgrind); writes the figures
    # table into README.md and docs/benchmarks.md.
    session.run("python", "benchmarks/icount.py", "--all")
    session.run("python", "benchmarks/inproc.py")
    session.run("python", "benchmarks/bridges.py")
    session.run("python", "benchmarks/sync.py")
    session.run("python", "benchmarks/dispatch.py")
    session.run("python", "benchmarks/store_sqlite.py")
    session.run("python", "benchmarks/store.py")  # PostgreSQL at 127.0.0.1:5432
    # HTTP load against nginx (apt-get install nginx-light wrk) or an aiohttp server.
    session.run("python", "benchmarks/loadgen.py")
    session.run("python", "benchmarks/loadgen_bodies.py")


@nox.session
def icount(session: nox.Session) -> None:
    """Instructions per job under callgrind, peers and asyncworkers' paths side by side
    (needs valgrind). Fails when the plain path costs more than 2.5x the bare queue.

    Arguments after ``--`` replace that default: ``nox -s icount -- --only bare --only plain
    --profile plain.callgrind``.
    """
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/icount.py", *(session.posargs or ["--max-ratio", "2.5"]))
