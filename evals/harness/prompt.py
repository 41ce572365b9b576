"""Print the whole first message of one eval run: the harness preamble, then the task's prompt.md.

Usage: python evals/harness/prompt.py TASK ARM N [--offline]  (after make_run.sh made the working copy)
The with-skill arm also gets the skill listed by name, description and path, the way Claude Code
lists installed skills. Nothing names the cause, the grader or a file to read.

--offline: the agent gets no database server (preamble-offline.txt), and the prompt's sentences
that offer TEST_POSTGRES_URL / TEST_MYSQL_URL are left out: the condition of a developer machine
that has only SQLite while production runs PostgreSQL or MariaDB.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SENTENCE_END = re.compile(r"(?<=[.:])\s+(?=[A-Z`])")


def without_servers(prompt: str) -> str:
    """The prompt less its paragraphs about the test servers (a sentence there on DATABASE_URL stays)."""
    paragraphs = []
    for paragraph in prompt.split("\n\n"):
        if "TEST_POSTGRES_URL" in paragraph or "TEST_MYSQL_URL" in paragraph:
            # keep only what says how the app picks its database; the rest is about the servers
            kept = [
                s
                for s in SENTENCE_END.split(paragraph)
                if "TEST_POSTGRES_URL" not in s and "TEST_MYSQL_URL" not in s and "DATABASE_URL" in s
            ]
            paragraph = " ".join(kept).strip()
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs).rstrip() + "\n"


def main(argv: list[str]) -> int:
    offline = "--offline" in argv
    argv = [a for a in argv if a != "--offline"]
    if len(argv) != 3 or argv[1] not in ("with-skill", "without-skill"):
        print("usage: prompt.py TASK with-skill|without-skill N [--offline]", file=sys.stderr)
        return 2
    task, arm, n = argv
    run = Path(os.environ.get("RUNS_DIR", "/tmp/evalruns")) / task / f"{arm}-{n}"
    prompt = (ROOT / "evals" / "tasks" / task / "prompt.md").read_text(encoding="utf-8")
    if offline:
        prompt = without_servers(prompt)
    python = os.environ.get("EVAL_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    preamble = (HERE / ("preamble-offline.txt" if offline else "preamble.txt")).read_text(encoding="utf-8")
    text = preamble.format(run=run, python=python)
    if arm == "with-skill":
        skill_md = (run / ".claude" / "skills" / "async-sqlalchemy-patterns" / "SKILL.md").read_text(encoding="utf-8")
        match = re.search(r'^description: "(.*)"$', skill_md, re.M)
        if match is None:
            print("SKILL.md has no one-line quoted description", file=sys.stderr)
            return 3
        text += (
            "\nThe following skills are available in this project (read a skill's SKILL.md when the task matches it):\n"
            f"- async-sqlalchemy-patterns: {match.group(1)} (.claude/skills/async-sqlalchemy-patterns/SKILL.md)\n"
        )
    print(text + "\n--- The user's request ---\n\n" + prompt)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
