"""The docs are tested: their Python examples run, the API reference covers ``__all__``, and the
README's first commands are the ones CI runs.

Every fenced block whose info string is exactly ``python`` in README.md and docs/*.md is a
complete program: it is written to a file and run with this interpreter in a subprocess (a
file, so that ``kind="process"`` examples can pickle their functions). The examples start
together, one subprocess each, and each test reads its block's outcome. Blocks marked
``python no-run`` are shown, not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import asyncworkers as aw
from _helpers import SUBPROCESS_GUARD

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its info string and its text."""

    path: Path
    line: int
    info: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return [
        Block(path, text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2))
        for m in FENCE.finditer(text)
    ]


EXAMPLES = [b for path in DOCS if path.exists() for b in blocks(path) if b.info == "python"]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10


def run_example(block: Block, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run one example as a script in its own directory."""
    directory.mkdir(parents=True)
    script = directory / "example.py"
    script.write_text(block.code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_GUARD,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every example's outcome, the examples run side by side."""
    root = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        futures = {b.id: pool.submit(run_example, b, root / str(i)) for i, b in enumerate(EXAMPLES)}
        return {block_id: future.result() for block_id, future in futures.items()}


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.id for b in EXAMPLES])
def test_example_runs(block: Block, outcomes: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = outcomes[block.id]
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stdout}\n{proc.stderr}"


def test_api_reference_covers_every_public_name() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,4} `(\w+)", api, re.MULTILINE))
    missing = [name for name in aw.__all__ if name not in headings]
    assert not missing, f"docs/api.md has no heading for {missing}"


def test_api_reference_covers_every_public_name_of_the_store() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,4} `store\.(\w+)`", api, re.MULTILINE))
    missing = [name for name in aw.store.__all__ if name not in headings]
    assert not missing, f"docs/api.md has no heading for aw.store.{missing}"


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = blocks(ROOT / "README.md")[0]
    before = readme[: readme.index("```")].strip().splitlines()
    assert before[0].startswith("# ")
    assert len([line for line in before[1:] if line.strip()]) <= 1
    assert first.info in {"sh", "bash", "shell", "console"}
    demo, tests = first.code.strip().splitlines()
    assert demo.endswith("asyncworkers demo")
    assert tests.endswith("-m pytest -q")


def test_ci_runs_the_readme_test_command() -> None:
    tests = blocks(ROOT / "README.md")[0].code.strip().splitlines()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
