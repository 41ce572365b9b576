"""The skill package obeys the published SKILL.md rules and our budgets (tests/skill_check.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from skill_check import (
    check_all,
    check_body,
    check_frontmatter,
    check_names,
    check_paths,
    check_reachability,
    check_references,
)

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_layout() -> None:
    for name in ("SKILL.md", "README.md", "LICENSE", "pyproject.toml", "Makefile", ".gitignore", ".ci/run"):
        assert (ROOT / name).is_file(), f"{name} is missing"
    for name in ("scripts", "templates", "examples", "references", "tests", "evals"):
        assert (ROOT / name).is_dir(), f"{name}/ is missing"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_skill_passes_all_checks() -> None:
    assert check_all(ROOT) == []


def test_skill_frontmatter_content() -> None:
    import yaml

    fm = yaml.safe_load((ROOT / "SKILL.md").read_text().split("---\n")[1])
    desc = fm["description"]
    for symbol in (
        "AsyncSession",
        "async_sessionmaker",
        "create_async_engine",
        "selectinload",
        "MissingGreenlet",
        "alembic revision --autogenerate",
        "asyncpg",
        "aiosqlite",
        "FastAPI Depends",
    ):
        assert symbol in desc, f"description does not name {symbol}"
    assert "[asyncio]" in fm["compatibility"] and "Python" in fm["compatibility"]
    assert all(isinstance(v, str) for v in fm["metadata"].values())


def test_scripts_are_executable_and_have_help() -> None:
    assert SCRIPTS, "no scripts/*.sh yet"
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script.name} has no run bit"
        proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 0, f"{script.name} --help exited {proc.returncode}: {proc.stderr[-500:]}"
        assert "usage" in proc.stdout.lower(), f"{script.name} --help prints no usage"


GOOD = (ROOT / "SKILL.md").read_bytes() if (ROOT / "SKILL.md").exists() else b""


def replace_description(raw: bytes, new_line: bytes) -> bytes:
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"description:"):
            lines[i] = new_line
    return b"\n".join(lines)


@pytest.mark.parametrize(
    ("case", "mutate", "expected"),
    [
        (
            "unquoted colon in description",
            lambda raw: replace_description(raw, b"description: Async patterns: use when you need them"),
            "not valid strict YAML",
        ),
        (
            "top-level version key",
            lambda raw: raw.replace(b"\nname:", b"\nversion: 1.0.0\nname:", 1),
            "keys not allowed: ['version']",
        ),
        ("CRLF line endings", lambda raw: raw.replace(b"\n", b"\r\n"), "CR/CRLF"),
        ("flow list", lambda raw: raw.replace(b"\nname:", b"\nallowed-tools: [Bash, Read]\nname:", 1), "flow-style"),
        (
            "name with claude",
            lambda raw: raw.replace(b"name: async-sqlalchemy-patterns", b"name: claude-sqlalchemy", 1),
            "must not contain 'claude'",
        ),
        ("angle bracket", lambda raw: replace_description(raw, b'description: "Use when <script> runs"'), "'<' or '>'"),
        (
            "unquoted description",
            lambda raw: replace_description(raw, b"description: Use when async things happen"),
            "double-quoted",
        ),
    ],
)
def test_checker_rejects_broken_frontmatter(case: str, mutate, expected: str) -> None:
    problems = check_frontmatter(mutate(GOOD))
    assert any(expected in p for p in problems), f"{case}: {problems}"


def test_checker_rejects_long_body() -> None:
    head = GOOD.split(b"\n---\n", 1)[0] + b"\n---\n"
    broken = head + b"line\n" * 501
    assert any("501 lines" in p for p in check_body(broken))
    assert not check_body(head + b"line\n" * 500)
    assert any("tokens" in p for p in check_body(head + b"x" * 20004 + b"\n"))


def copy_skill(tmp_path: Path, name: str = "async-sqlalchemy-patterns") -> Path:
    dest = tmp_path / name
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv*", ".git", "node_modules", "__pycache__", ".ci"))
    return dest


def test_checker_rejects_missing_link_and_unreachable_file(tmp_path: Path) -> None:
    skill = copy_skill(tmp_path)
    text = (skill / "SKILL.md").read_text()
    (skill / "SKILL.md").write_text(text + "\nRead [gone](references/does-not-exist.md) when lost.\n")
    assert any("does-not-exist.md" in p and "does not exist" in p for p in check_paths(skill))
    (skill / "examples" / "orphan_example.py").write_text('"""orphan"""\n')
    assert any("orphan_example.py" in p for p in check_reachability(skill))
    (skill / "templates" / "_hidden.py").write_text("")
    assert any("_hidden.py" in p for p in check_names(skill))


def test_skills_ref_validate(tmp_path: Path) -> None:
    exe = shutil.which("skills-ref")
    if exe is None:
        msg = "skills-ref not found: npm install skills-ref and put node_modules/.bin on PATH (.ci/run does)"
        if REQUIRE_ALL:
            pytest.fail(msg)
        pytest.skip(msg)
    skill = copy_skill(tmp_path)
    proc = subprocess.run([exe, "validate", str(skill)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = copy_skill(tmp_path / "other", "wrong-folder-name")
    proc = subprocess.run([exe, "validate", str(wrong)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, "skills-ref accepted a folder whose name differs from the skill name"


def test_checker_rejects_long_reference_and_missing_contents(tmp_path: Path) -> None:
    skill = copy_skill(tmp_path)
    (skill / "references" / "long.md").write_text("# Long\n\n" + "text\n" * 300)
    problems = check_references(skill)
    assert any("long.md is 302 lines" in p for p in problems), problems
    assert any("long.md" in p and "contents" in p for p in problems), problems
    assert check_references(ROOT) == []
