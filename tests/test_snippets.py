"""Every fenced Python block in SKILL.md and references/*.md is verified.

A block is either
- an excerpt: the line right before the fence is ``<!-- excerpt: PATH -->`` and the block's lines
  appear, consecutively and verbatim (after dedent), in PATH — so it cannot drift from tested code; or
- a program: it is run with ``python -c`` from the skill root (root on ``sys.path``) and must exit 0
  within 60 s, on every available backend (``DATABASE_URL`` set to the server URL).
Every block must parse.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
EXCERPT = re.compile(r"<!--\s*excerpt:\s*(?P<path>[^\s>]+)\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int
    code: str
    excerpt_of: str | None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT).as_posix()}:{self.line}"


def python_blocks(doc: Path) -> list[Block]:
    text = doc.read_text("utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        if m["lang"].lower() not in ("python", "py", "python3"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = EXCERPT.search(before)
        code = textwrap.dedent(m["code"])
        blocks.append(Block(doc, line, code, marker["path"] if marker else None))
    return blocks


DOCS = [ROOT / "SKILL.md", *sorted((ROOT / "references").glob("*.md"))]
BLOCKS = [b for d in DOCS if d.exists() for b in python_blocks(d)]
EXCERPTS = [b for b in BLOCKS if b.excerpt_of]
PROGRAMS = [b for b in BLOCKS if not b.excerpt_of]


def contains_verbatim(source: str, excerpt: str) -> bool:
    want = [ln.rstrip() for ln in textwrap.dedent(excerpt).strip("\n").splitlines()]
    have = [ln.rstrip() for ln in source.splitlines()]
    n = len(want)
    for i in range(len(have) - n + 1):
        if have[i].strip() != want[0].strip():
            continue
        window = textwrap.dedent("\n".join(have[i : i + n])).splitlines()
        if [ln.rstrip() for ln in window] == want:
            return True
    return False


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_parses(block: Block) -> None:
    try:
        ast.parse(block.code)
    except SyntaxError as exc:
        pytest.fail(f"{block.id}: does not parse: {exc}")


@pytest.mark.parametrize("block", EXCERPTS, ids=[b.id for b in EXCERPTS])
def test_excerpt_matches_file(block: Block) -> None:
    path = ROOT / block.excerpt_of
    assert path.is_file(), f"{block.id}: excerpt source {block.excerpt_of} does not exist"
    assert contains_verbatim(path.read_text("utf-8"), block.code), (
        f"{block.id}: block is not a verbatim excerpt of {block.excerpt_of}:\n{block.code}"
    )


def test_program_blocks_run(server_url: str, backend: str) -> None:
    """Blocks without an excerpt marker run as programs (none today: every block is an excerpt)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    if backend != "sqlite":
        env["DATABASE_URL"] = server_url
    for block in PROGRAMS:
        proc = subprocess.run(
            [sys.executable, "-c", block.code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{block.id} exited {proc.returncode}:\n{proc.stderr[-2000:]}"


def test_verbatim_matcher() -> None:
    src = "class A:\n    def f(self):\n        return 1\n\n    x = 2\n"
    assert contains_verbatim(src, "def f(self):\n    return 1\n")
    assert not contains_verbatim(src, "def f(self):\n    return 2\n")
    assert not contains_verbatim(src, "def f(self):\nreturn 1\n")


def test_every_doc_block_is_collected() -> None:
    # a fence the regex misses would escape verification: count raw ```python openings too
    for doc in DOCS:
        if doc.exists():
            raw = len(re.findall(r"^[ \t]*```(?:python|py|python3)\b", doc.read_text("utf-8"), re.M))
            assert raw == len(python_blocks(doc)), f"{doc.name}: {raw} fences, {len(python_blocks(doc))} collected"
