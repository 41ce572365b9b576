"""Shape of the eval files (trigger evals and skill-creator output evals)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_trigger_evals_shape() -> None:
    items = json.loads((ROOT / "evals" / "triggers.json").read_text())
    assert isinstance(items, list) and len(items) >= 20
    for item in items:
        assert set(item) == {"query", "should_trigger"}, item
        assert isinstance(item["query"], str) and len(item["query"]) >= 20
        assert isinstance(item["should_trigger"], bool)
    positives = [i for i in items if i["should_trigger"]]
    negatives = [i for i in items if not i["should_trigger"]]
    assert len(positives) >= 10 and len(negatives) >= 10
    # some positives never say SQLAlchemy: the skill must trigger on symptoms too
    assert sum("sqlalchemy" not in i["query"].lower() for i in positives) >= 3
    assert len({i["query"] for i in items}) == len(items), "duplicate queries"


def test_output_evals_shape() -> None:
    data = json.loads((ROOT / "evals" / "evals.json").read_text())
    assert data["skill_name"] == "async-sqlalchemy-patterns"
    evals = data["evals"]
    assert len(evals) >= 5
    assert len({e["id"] for e in evals}) == len(evals)
    for e in evals:
        assert {"id", "prompt", "expected_output", "expectations"} <= set(e), e
        assert isinstance(e["id"], int)
        assert isinstance(e["prompt"], str) and e["prompt"].strip()
        assert isinstance(e["expected_output"], str) and e["expected_output"].strip()
        assert isinstance(e["expectations"], list) and len(e["expectations"]) >= 2
        assert all(isinstance(x, str) and x.strip() for x in e["expectations"])
        assert isinstance(e.get("files", []), list)
