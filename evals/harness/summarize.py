"""Rebuild the summary tables of evals/results.md from its run log.

Usage: python evals/harness/summarize.py [--write]
The run log is the table under "## Run log"; a row whose notes start with "excluded:" is listed
there but left out of the figures. Without --write the tables are printed; with it they replace
the text between the <!-- summary:start --> and <!-- summary:end --> markers.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
ARMS = ("with-skill", "without-skill")


def read_log(text: str) -> list[dict[str, str]]:
    lines = text.split("## Run log", 1)[1].splitlines()
    rows = [ln for ln in lines if ln.startswith("|")]
    header = [c.strip() for c in rows[0].strip().strip("|").split("|")]
    out = []
    for ln in rows[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        out.append(dict(zip(header, cells, strict=True)))
    return out


def pct(a: int, b: int) -> str:
    return f"{round(100 * a / b)}%" if b else "-"


def tables(rows: list[dict[str, str]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    excluded = 0
    for r in rows:
        if r["notes"].startswith("excluded:"):
            excluded += 1
            continue
        groups[(r["condition"], r["task"], r["arm"])].append(r)
    parts = []
    for condition in sorted({c for c, _, _ in groups}, key=lambda c: (c != "servers", c)):
        tasks = sorted({t for c, t, _ in groups if c == condition})
        lines = [
            f"**Condition `{condition}`**",
            "",
            "| task | arm | runs | pass rate | median checks |",
            "|---|---|---|---|---|",
        ]
        totals = {arm: [0, 0] for arm in ARMS}
        loaded = [0, 0]
        for task in tasks:
            for arm in ARMS:
                rs = groups.get((condition, task, arm), [])
                if not rs:
                    lines.append(f"| {task} | {arm} | 0 | - | - |")
                    continue
                passed = sum(r["exit"] == "0" for r in rs)
                totals[arm][0] += passed
                totals[arm][1] += len(rs)
                xs = [float(r["score"].split("/")[0]) for r in rs]
                med = statistics.median(xs)
                y = rs[0]["score"].split("/")[1]
                lines.append(f"| {task} | {arm} | {len(rs)} | {pct(passed, len(rs))} | {med:g}/{y} |")
                if arm == "with-skill":
                    loaded[0] += sum(r["skill loaded"] == "yes" for r in rs)
                    loaded[1] += len(rs)
        (wp, wn), (op, on) = totals["with-skill"], totals["without-skill"]
        diff = (100 * wp / wn - 100 * op / on) if wn and on else 0.0
        lines += [
            "",
            f"With the skill {wp}/{wn} runs passed ({pct(wp, wn)}), without it {op}/{on} ({pct(op, on)}): "
            f"a difference of {diff:+.0f} points. The skill was loaded unprompted in {loaded[0]} of "
            f"{loaded[1]} with-skill runs ({pct(*loaded)}).",
        ]
        parts.append("\n".join(lines))
    parts.append(f"Runs listed in the log but left out of these figures: {excluded} (see their notes).")
    return "\n\n".join(parts)


def main(argv: list[str]) -> int:
    text = RESULTS.read_text(encoding="utf-8")
    summary = tables(read_log(text))
    if "--write" not in argv:
        print(summary)
        return 0
    if START not in text or END not in text:
        print(f"{RESULTS} has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    RESULTS.write_text(f"{head}{START}\n{summary}\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
