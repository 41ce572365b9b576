"""Checks a skill folder against the published SKILL.md rules and this project's budgets.

Rules implemented (sources: the Agent Skills specification / ``skills-ref validate``, and
Anthropic's skill upload rules):
- frontmatter: a ``---`` YAML block that parses as strict YAML (block style, no flow
  collections), LF line endings, only the keys name, description, license, compatibility,
  metadata, allowed-tools;
- ``name``: kebab-case, at most 64 characters, no "claude"/"anthropic", equal to the folder name
  the skill is installed in (here: async-sqlalchemy-patterns);
- ``description``: one double-quoted line, at most 1024 characters (project budget: 600), no < or >;
- ``compatibility``: at most 500 characters; ``metadata``: a mapping of string values;
- body: at most 500 lines and 5,000 tokens (characters / 4);
- every relative path named in SKILL.md or references/*.md exists;
- every file under scripts/, templates/, examples/, references/ is reachable from SKILL.md,
  directly or through one reference file SKILL.md names.

``python tests/skill_check.py [DIR]`` prints the problems and exits 1 when there are any.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SKILL_NAME = "async-sqlalchemy-patterns"
ALLOWED_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
DESCRIPTION_MAX = 1024
DESCRIPTION_BUDGET = 600
BODY_MAX_LINES = 500
BODY_MAX_TOKENS = 5000
REACHABLE_DIRS = ("scripts", "templates", "examples", "references")
PATH_DIRS = ("scripts", "templates", "examples", "references", "tests", "evals")
IGNORED_PARTS = {"__pycache__", "node_modules"}

FRONTMATTER = re.compile(r"\A---\n(?P<fm>.*?)\n---\n(?P<body>.*)\Z", re.S)
MD_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
CODE_PATH = re.compile(r"`(?:bash |python3? )?(?P<path>(?:" + "|".join(PATH_DIRS) + r")/[A-Za-z0-9_.\-/]+)")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses flow collections ([a, b] / {a: b}) and duplicate keys."""


def _no_flow(loader: StrictLoader, node: Any, deep: bool = False) -> Any:
    if node.flow_style:
        raise yaml.constructor.ConstructorError(None, None, "flow-style collection (use block style)", node.start_mark)
    return loader.construct_sequence(node, deep=deep)


def _mapping(loader: StrictLoader, node: Any, deep: bool = False) -> Any:
    if node.flow_style:
        raise yaml.constructor.ConstructorError(None, None, "flow-style mapping (use block style)", node.start_mark)
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(dupes)}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _no_flow)
StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def split_skill(raw: bytes) -> tuple[str, str] | None:
    text = raw.decode("utf-8", "replace")
    m = FRONTMATTER.match(text)
    return (m["fm"], m["body"]) if m else None


def check_frontmatter(raw: bytes, folder_name: str | None = SKILL_NAME) -> list[str]:
    problems: list[str] = []
    if b"\r" in raw:
        problems.append("SKILL.md has CR/CRLF line endings; use LF only")
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    parts = split_skill(raw)
    if parts is None:
        return problems + ["SKILL.md must start with a '---' YAML frontmatter block closed by '---'"]
    fm_text, _ = parts
    try:
        data = yaml.load(fm_text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return problems + [f"frontmatter is not valid strict YAML: {first} ({exc.__class__.__name__})"]
    if not isinstance(data, dict):
        return problems + ["frontmatter must be a YAML mapping"]
    extra = sorted(set(data) - ALLOWED_KEYS)
    if extra:
        problems.append(f"frontmatter keys not allowed: {extra} (allowed: {sorted(ALLOWED_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append("frontmatter 'name' is missing")
    else:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
            problems.append(f"name {name!r} is not kebab-case (lowercase letters, digits, single hyphens)")
        if len(name) > 64:
            problems.append(f"name is {len(name)} characters (max 64)")
        if "claude" in name or "anthropic" in name:
            problems.append("name must not contain 'claude' or 'anthropic'")
        if folder_name is not None and name != folder_name:
            problems.append(f"name {name!r} must equal the skill folder name {folder_name!r}")
    desc = data.get("description")
    raw_desc = re.search(r"^description:(?P<v>.*)$", fm_text, re.M)
    if not isinstance(desc, str) or not desc.strip():
        problems.append("frontmatter 'description' is missing or empty")
    else:
        if len(desc) > DESCRIPTION_MAX:
            problems.append(f"description is {len(desc)} characters (max {DESCRIPTION_MAX})")
        elif len(desc) > DESCRIPTION_BUDGET:
            problems.append(f"description is {len(desc)} characters (project budget {DESCRIPTION_BUDGET})")
        if "<" in desc or ">" in desc:
            problems.append("description must not contain '<' or '>'")
        v = raw_desc["v"].strip() if raw_desc else ""
        if not (len(v) >= 2 and v.startswith('"') and v.endswith('"')):
            problems.append("description must be a single double-quoted line")
        if "use when" not in desc.lower():
            problems.append("description should say when to use the skill ('Use when ...')")
    comp = data.get("compatibility")
    if comp is not None and (not isinstance(comp, str) or len(comp) > 500):
        problems.append("compatibility must be a string of at most 500 characters")
    meta = data.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            problems.append("metadata must be a mapping")
        else:
            bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                problems.append(f"metadata values must be strings (not: {bad})")
    lic = data.get("license")
    if lic is not None and not isinstance(lic, str):
        problems.append("license must be a string")
    return problems


def check_body(raw: bytes) -> list[str]:
    parts = split_skill(raw.replace(b"\r\n", b"\n"))
    if parts is None:
        return []
    body = parts[1]
    problems = []
    lines = body.count("\n") + (0 if body.endswith("\n") else 1)
    if lines > BODY_MAX_LINES:
        problems.append(f"SKILL.md body is {lines} lines (max {BODY_MAX_LINES})")
    tokens = len(body) // 4
    if tokens > BODY_MAX_TOKENS:
        problems.append(f"SKILL.md body is ~{tokens} tokens (max {BODY_MAX_TOKENS}, characters/4)")
    return problems


def named_paths(doc: Path, root: Path) -> list[tuple[str, Path]]:
    """Relative paths a markdown file names: link targets (relative to the file) and
    backticked ``folder/...`` paths (relative to the skill root)."""
    text = doc.read_text("utf-8", "replace")
    found: list[tuple[str, Path]] = []
    for m in MD_LINK.finditer(text):
        target = m["target"].split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            continue
        found.append((target, (doc.parent / target).resolve()))
    for m in CODE_PATH.finditer(text):
        path = m["path"].rstrip(".,:;)")
        stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
        if any(ch in path for ch in "*{}<>") or path.endswith("/") or stem.isupper():
            continue  # globs, folders and placeholders such as scripts/NAME.sh

        target = (root / path).resolve()
        module = root / (path.split(".", 1)[0] + ".py")
        if not target.exists() and "." in path.rsplit("/", 1)[-1] and module.is_file():
            target = module.resolve()  # module.symbol notation, e.g. templates/query_counter.count_queries
        found.append((path, target))
    return found


def check_paths(root: Path) -> list[str]:
    docs = [root / "SKILL.md", *sorted((root / "references").glob("*.md"))]
    problems = []
    for doc in docs:
        if not doc.exists():
            continue
        for shown, resolved in named_paths(doc, root):
            if not resolved.exists():
                problems.append(f"{doc.relative_to(root)} names {shown!r}, which does not exist")
    return problems


def shipped_files(root: Path, dirs: tuple[str, ...] = REACHABLE_DIRS) -> list[Path]:
    out = []
    for d in dirs:
        base = root / d
        if base.is_dir():
            out += [
                p
                for p in base.rglob("*")
                if p.is_file() and not IGNORED_PARTS & set(p.parts) and p.suffix not in {".pyc"}
            ]
    return sorted(out)


def mentions(text: str, rel: str) -> bool:
    """``rel`` is named by its path, its file name, or a folder it sits in (``scripts/sqlprobe/``)."""
    name = rel.rsplit("/", 1)[-1]
    if rel in text or re.search(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])", text):
        return True
    parts = rel.split("/")
    return any("/".join(parts[:i]) + "/" in text for i in range(2, len(parts)))


def check_reachability(root: Path) -> list[str]:
    skill = root / "SKILL.md"
    if not skill.exists():
        return ["SKILL.md is missing"]
    skill_text = skill.read_text("utf-8", "replace")
    linked_refs = [
        p for p in sorted((root / "references").glob("*.md")) if mentions(skill_text, f"references/{p.name}")
    ]
    corpus = skill_text + "\n".join(p.read_text("utf-8", "replace") for p in linked_refs)
    problems = []
    for ref in sorted((root / "references").glob("*.md")):
        if ref not in linked_refs:
            problems.append(f"references/{ref.name} is not named in SKILL.md")
    for p in shipped_files(root):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("references/") and p.suffix == ".md":
            continue
        if not mentions(corpus, rel):
            problems.append(f"{rel} is not reachable from SKILL.md (name it in SKILL.md or a reference it links)")
    return problems


def check_names(root: Path) -> list[str]:
    problems = []
    if (root / "metadata.json").exists():
        problems.append("metadata.json must not be shipped")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_PARTS]
        for name in dirnames + filenames:
            if name.startswith("_"):
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                problems.append(f"{rel}: names starting with '_' are dropped by some installers")
    return problems


REFERENCE_MAX_LINES = 299  # "under 300 lines"
REFERENCE_CONTENTS_FROM = 100  # longer references need a contents list


def check_references(root: Path) -> list[str]:
    problems = []
    for ref in sorted((root / "references").glob("*.md")):
        lines = ref.read_text("utf-8", "replace").splitlines()
        if len(lines) > REFERENCE_MAX_LINES:
            problems.append(f"references/{ref.name} is {len(lines)} lines (budget: under 300)")
        if len(lines) > REFERENCE_CONTENTS_FROM and not any(
            ln.strip().lower().lstrip("#* ").startswith("contents") for ln in lines[:40]
        ):
            problems.append(
                f"references/{ref.name} is over {REFERENCE_CONTENTS_FROM} lines and has no contents list near the top"
            )
    return problems


def check_all(root: Path, folder_name: str | None = SKILL_NAME) -> list[str]:
    skill = root / "SKILL.md"
    if not skill.exists():
        return ["SKILL.md is missing"]
    raw = skill.read_bytes()
    return (
        check_frontmatter(raw, folder_name)
        + check_body(raw)
        + check_paths(root)
        + check_reachability(root)
        + check_names(root)
        + check_references(root)
    )


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    found = check_all(target)
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)")
    sys.exit(1 if found else 0)
