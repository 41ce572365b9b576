"""Static-mode speed and corpus precision/recall of optimize-queries (``make bench``).

- Speed: a generated tree of 1,000 realistic modules (models with relationships, repositories,
  FastAPI routers, services, plain utilities) checked by ``static_rules.check_paths`` in-process,
  against bare ``ast.parse`` of the same files (read + parse, the floor for any AST tool). Prints
  files/s and the ratio (goal <= 3x), fastest of 3 interleaved rounds.
- Precision/recall on the corpus: every marked line of tests/corpus (apps and static/ cases) is an
  expected finding; a reported (file, line, rule) that no mark names is a false positive.
Reported, never asserted as timings.
"""

from __future__ import annotations

import ast
import random
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "sqlprobe"))
sys.path.insert(0, str(ROOT / "tests"))

import static_rules

MODULES = 1000
ROUNDS = 3

MODEL = """
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base


class {A}(Base):
    __tablename__ = "{a}s"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    {b}s: Mapped[list[{B}]] = relationship(back_populates="{a}", lazy="raise")


class {B}(Base):
    __tablename__ = "{b}s"
    id: Mapped[int] = mapped_column(primary_key=True)
    {a}_id: Mapped[int] = mapped_column(ForeignKey("{a}s.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    {a}: Mapped[{A}] = relationship(back_populates="{b}s", lazy="raise")
"""

REPOSITORY = """
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.{a} import {A}, {B}


class {A}Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, {a}_id: int) -> {A} | None:
        return await self.session.get({A}, {a}_id)

    async def list_page(self, limit: int, after: int = 0) -> Sequence[{A}]:
        stmt = select({A}).where({A}.id > after).order_by({A}.id).limit(limit).options(selectinload({A}.{b}s))
        return (await self.session.scalars(stmt)).all()

    async def rename_many(self, names: dict[int, str]) -> None:
        for {a}_id, name in names.items():
            await self.session.execute(update({A}).where({A}.id == {a}_id).values(name=name))

    async def children(self, ids: list[int]) -> dict[int, list[{B}]]:
        rows = (await self.session.scalars(select({B}).where({B}.{a}_id.in_(ids)))).all()
        out: dict[int, list[{B}]] = {{}}
        for row in rows:
            out.setdefault(row.{a}_id, []).append(row)
        return out
"""

ROUTER = """
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from app.deps import SessionDep
from app.repositories.{a} import {A}Repository
from app.schemas.{a} import {A}Out

router = APIRouter(prefix="/{a}s", tags=["{a}"])


@router.get("/", response_model=list[{A}Out])
async def list_{a}s(session: SessionDep, limit: Annotated[int, Query(le=200)] = 50, after: int = 0) -> list[{A}Out]:
    items = await {A}Repository(session).list_page(limit, after)
    return [{A}Out.model_validate(i) for i in items]


@router.get("/{{{a}_id}}", response_model={A}Out)
async def get_{a}(session: SessionDep, {a}_id: int) -> {A}Out:
    item = await {A}Repository(session).get({a}_id)
    if item is None:
        raise HTTPException(status_code=404, detail="{a} not found")
    return {A}Out.model_validate(item)
"""

UTIL = """
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

SLUG = re.compile(r"[^a-z0-9]+")


@dataclass
class {A}Settings:
    name: str
    tags: list[str] = field(default_factory=list)
    retries: int = 3

    def slug(self) -> str:
        return SLUG.sub("-", self.name.lower()).strip("-")

    def digest(self) -> str:
        return hashlib.sha256("|".join([self.name, *self.tags]).encode()).hexdigest()


def chunked(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def describe(settings: {A}Settings) -> str:
    parts = [f"{{k}}={{v}}" for k, v in sorted(vars(settings).items())]
    if len(parts) > 3:
        return ", ".join(parts[:3]) + ", ..."
    return ", ".join(parts)
"""


def generate(root: Path, count: int = MODULES) -> list[Path]:
    rng = random.Random(7)
    kinds = [("models", MODEL), ("repositories", REPOSITORY), ("routers", ROUTER), ("utils", UTIL)]
    files = []
    for i in range(count):
        folder, template = kinds[i % len(kinds)]
        a = f"thing{i // len(kinds)}"
        names = {"a": a, "A": a.capitalize(), "b": f"part{rng.randrange(1000)}", "B": f"Part{rng.randrange(1000)}"}
        path = root / "app" / folder / f"{a}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**names), encoding="utf-8")
        files.append(path)
    return files


def parse_floor(files: list[Path]) -> float:
    started = time.perf_counter()
    for f in files:
        ast.parse(f.read_bytes(), filename=str(f))
    return time.perf_counter() - started


@pytest.mark.bench
def test_static_speed(tmp_path: Path) -> None:
    files = generate(tmp_path)
    floors, fulls = [], []
    result = None
    for _ in range(ROUNDS):
        floors.append(parse_floor(files))
        started = time.perf_counter()
        result = static_rules.check_paths([str(tmp_path / "app")], display_base=tmp_path)
        fulls.append(time.perf_counter() - started)
    assert result is not None and result.files == len(files) and not result.skipped
    floor, full = min(floors), min(fulls)
    print(f"\noptimize-queries --static on {len(files)} generated modules, fastest of {ROUNDS}:")
    print(f"  ast.parse alone: {floor * 1000:.0f} ms ({len(files) / floor:.0f} files/s)")
    print(
        f"  static mode:     {full * 1000:.0f} ms ({len(files) / full:.0f} files/s) = {full / floor:.2f}x ast.parse (goal <= 3x)"
    )
    print(f"  findings: {len(result.findings)} {sorted({f['rule'] for f in result.findings})}")


@pytest.mark.bench
def test_static_corpus_precision_recall() -> None:
    from test_optimize_queries import expectations

    corpus = ROOT / "tests" / "corpus"
    files = sorted(corpus.glob("*.py")) + sorted((corpus / "static").glob("*.py"))
    expected: set[tuple[str, int, str]] = set()
    for f in files:
        for (mode, rule), lines in expectations(f)["lines"].items():
            if mode == "static":
                expected |= {(str(f.relative_to(ROOT)), line, rule) for line in lines}
    result = static_rules.check_paths([str(corpus)], display_base=ROOT)
    reported = {(f["file"], f["line"], f["rule"]) for f in result.findings}
    true = reported & expected
    per_rule: dict[str, list[int]] = {}
    for _, _, rule in expected | reported:
        per_rule.setdefault(rule, [0, 0, 0])
    for _, _, rule in true:
        per_rule[rule][0] += 1
    for _, _, rule in reported:
        per_rule[rule][1] += 1
    for _, _, rule in expected:
        per_rule[rule][2] += 1
    print(
        f"\noptimize-queries --static on the corpus ({len(files)} files): precision {len(true) / max(1, len(reported)):.2f} ({len(true)}/{len(reported)}), recall {len(true) / max(1, len(expected)):.2f} ({len(true)}/{len(expected)})"
    )
    for rule, (tp, rep, exp) in sorted(per_rule.items()):
        print(f"  {rule:<38} precision {tp}/{rep}  recall {tp}/{exp}")
