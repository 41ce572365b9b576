"""The revision review rules on revision files shaped like Alembic's autogenerate output.

For each rule: a revision where it must fire (true positive) and a look-alike where it must stay
quiet (false positive), per dialect where the risk depends on the backend. No database needed; the
populated-database evidence is in tests/test_migration_risks.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from revision_review import RULES, Review, review_revision

HEADER = '''"""x

Revision ID: abc123
Revises: 
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "abc123"
down_revision = None
branch_labels = None
depends_on = None

'''


def review(tmp_path: Path, upgrade: str, downgrade: str = "pass", dialect: str = "postgresql") -> Review:
    body = HEADER + "def upgrade() -> None:\n" + indent(upgrade) + "\n\ndef downgrade() -> None:\n" + indent(downgrade)
    path = tmp_path / "rev.py"
    path.write_text(body + "\n")
    return review_revision(path, dialect)


def indent(code: str) -> str:
    return "\n".join("    " + line if line.strip() else line for line in code.strip("\n").splitlines())


def rules(r: Review) -> list[str]:
    return [w.rule for w in r.warnings]


FK_UP = "op.create_foreign_key('fk_books_editor_id_authors', 'books', 'authors', ['editor_id'], ['id'])"
FK_DOWN = "op.drop_constraint('fk_books_editor_id_authors', 'books', type_='foreignkey')"


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_add_foreign_key_on_an_existing_table(tmp_path: Path, dialect: str) -> None:
    r = review(tmp_path, FK_UP, FK_DOWN, dialect)
    assert rules(r) == ["add_foreign_key"]
    message = r.warnings[0].message
    assert "locks it and the referenced table" in message and "every row" in message
    if dialect == "postgresql":
        assert "postgresql_not_valid=True" in message
        assert "ALTER TABLE books VALIDATE CONSTRAINT fk_books_editor_id_authors" in message


def test_add_foreign_key_quiet_on_a_new_table_and_on_sqlite(tmp_path: Path) -> None:
    new_table = (
        """
op.create_table('books', sa.Column('id', sa.Integer(), nullable=False), sa.Column('editor_id', sa.Integer()))
"""
        + FK_UP
    )
    assert rules(review(tmp_path, new_table, "op.drop_table('books')")) == []
    batch = """
with op.batch_alter_table('books', schema=None) as batch_op:
    batch_op.create_foreign_key('fk_books_editor_id_authors', 'authors', ['editor_id'], ['id'])
"""
    assert (
        rules(review(tmp_path, batch, "with op.batch_alter_table('books') as b:\n    b.drop_constraint('x')", "sqlite"))
        == []
    )


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_add_unique_constraint_on_an_existing_table(tmp_path: Path, dialect: str) -> None:
    r = review(
        tmp_path,
        "op.create_unique_constraint('uq_books_title', 'books', ['title'])",
        "op.drop_constraint('uq_books_title', 'books', type_='unique')",
        dialect,
    )
    assert rules(r) == ["add_unique_constraint"]
    message = r.warnings[0].message
    assert "duplicates" in message
    if dialect == "postgresql":
        assert (
            "postgresql_concurrently=True" in message and "ADD CONSTRAINT uq_books_title UNIQUE USING INDEX" in message
        )


def test_add_unique_constraint_quiet_on_a_new_table(tmp_path: Path) -> None:
    up = """
op.create_table('books', sa.Column('id', sa.Integer(), nullable=False), sa.Column('title', sa.String(10)))
op.create_unique_constraint('uq_books_title', 'books', ['title'])
"""
    assert rules(review(tmp_path, up, "op.drop_table('books')")) == []


def test_unnamed_constraint(tmp_path: Path) -> None:
    """Autogenerate without a naming convention: create_unique_constraint(None, ...) / drop_constraint(None, ...)."""
    r = review(
        tmp_path,
        "op.create_unique_constraint(None, 'books', ['title'])",
        "op.drop_constraint(None, 'books', type_='unique')",
    )
    assert rules(r) == ["add_unique_constraint", "unnamed_constraint"]  # reported once, at the create
    assert "naming_convention" in r.warnings[1].message and "it has no name" in r.warnings[1].message
    fk = review(
        tmp_path,
        "op.create_foreign_key(None, 'books', 'authors', ['editor_id'], ['id'])",
        "op.drop_constraint(None, 'books', type_='foreignkey')",
        "sqlite",
    )
    assert rules(fk) == ["unnamed_constraint"]
    drop = review(
        tmp_path,
        "op.drop_constraint(None, 'books', type_='unique')",
        "op.create_unique_constraint('uq_books_title', 'books', ['title'])",
        "sqlite",
    )
    assert rules(drop) == ["unnamed_constraint"] and drop.warnings[0].function == "upgrade"


def test_named_constraints_are_not_unnamed(tmp_path: Path) -> None:
    r = review(
        tmp_path,
        "op.create_unique_constraint(op.f('uq_books_title'), 'books', ['title'])",
        "op.drop_constraint(op.f('uq_books_title'), 'books', type_='unique')",
        "sqlite",
    )
    assert rules(r) == []


def test_downgrade_not_null_without_default(tmp_path: Path) -> None:
    """The upgrade drops a NOT NULL column; the downgrade re-adds it without a default: fails on rows."""
    r = review(
        tmp_path,
        "op.drop_column('books', 'isbn')",
        "op.add_column('books', sa.Column('isbn', sa.VARCHAR(length=20), autoincrement=False, nullable=False))",
    )
    assert rules(r) == ["drop_column", "downgrade_not_null_without_default"]
    drop, down = r.warnings
    assert "cannot come back" in drop.message and "restores" not in drop.message
    assert down.function == "downgrade" and "re-adds" in down.message
    nullable = review(
        tmp_path,
        "op.drop_column('books', 'isbn')",
        "op.add_column('books', sa.Column('isbn', sa.VARCHAR(length=20), nullable=True))",
    )
    assert rules(nullable) == ["drop_column"]


def test_downgrade_of_a_created_table_is_quiet(tmp_path: Path) -> None:
    r = review(
        tmp_path,
        """
op.create_table('tags', sa.Column('id', sa.Integer(), nullable=False), sa.Column('n', sa.String(5), nullable=False))
op.create_index('ix_tags_n', 'tags', ['n'])
""",
        "op.drop_index('ix_tags_n', table_name='tags')\nop.drop_table('tags')",
    )
    assert rules(r) == [] and r.notes == []


def test_downgrade_recreating_a_dropped_table_is_quiet(tmp_path: Path) -> None:
    r = review(
        tmp_path,
        "op.drop_table('tags')",
        """
op.create_table('tags', sa.Column('id', sa.Integer(), nullable=False), sa.Column('n', sa.String(5), nullable=False))
op.create_index('ix_tags_n', 'tags', ['n'])
op.create_unique_constraint('uq_tags_n', 'tags', ['n'])
""",
    )
    assert rules(r) == ["drop_table"]
    assert "cannot come back" in r.warnings[0].message


WIDEN = (
    "op.alter_column('books', 'title', existing_type=sa.VARCHAR(length=100), type_=sa.String(length=200), "
    "existing_nullable=False)"
)
NARROW = (
    "op.alter_column('books', 'title', existing_type=sa.String(length=200), type_=sa.VARCHAR(length=100), "
    "existing_nullable=False)"
)


@pytest.mark.parametrize(
    ("dialect", "up_kind"),
    [("postgresql", "note"), ("mysql", "note"), ("sqlite", "warning")],
)
def test_varchar_widening_per_backend(tmp_path: Path, dialect: str, up_kind: str) -> None:
    r = review(tmp_path, WIDEN, NARROW, dialect)
    up = [f for f in (r.warnings + r.notes) if f.function == "upgrade"]
    assert [f.rule for f in up] == ["type_change"]
    assert (up[0] in r.notes) == (up_kind == "note")
    if dialect == "postgresql":
        assert "no table rewrite" in up[0].message
    # the downgrade narrows: a rewrite, and it fails on longer values
    assert rules(r) == (["type_change"] if dialect == "sqlite" else []) + ["downgrade_type_change"]
    assert "narrowing" in r.warnings[-1].message


def test_widening_to_text_and_unbounded(tmp_path: Path) -> None:
    for new in ("sa.Text()", "sa.String()", "sa.TEXT()"):
        up = f"op.alter_column('books', 'title', existing_type=sa.VARCHAR(length=100), type_={new})"
        r = review(tmp_path, up, "pass\n")
        assert [n.rule for n in r.notes] == ["type_change"], new
    # TEXT -> unbounded VARCHAR (a real project's drift): no rewrite on PostgreSQL either
    r = review(tmp_path, "op.alter_column('notes', 'content', existing_type=sa.TEXT(), type_=sa.String())", "pass\n")
    assert [n.rule for n in r.notes] == ["type_change"] and "narrowing" not in r.notes[0].message
    # VARCHAR -> TEXT on MySQL/MariaDB is a table copy
    r = review(
        tmp_path,
        "op.alter_column('books', 'title', existing_type=sa.VARCHAR(length=100), type_=sa.Text())",
        "pass",
        "mysql",
    )
    assert [w.rule for w in r.warnings] == ["type_change", "empty_downgrade"] and "copy" in r.warnings[0].message


def test_mysql_widening_across_the_length_prefix_is_a_copy(tmp_path: Path) -> None:
    up = "op.alter_column('books', 'code', existing_type=mysql.VARCHAR(length=50), type_=sa.String(length=100))"
    r = review(tmp_path, up, "pass", "mysql")
    assert rules(r)[0] == "type_change" and "past 255 bytes" in r.warnings[0].message


def test_real_type_change_is_a_rewrite_on_postgresql(tmp_path: Path) -> None:
    up = "op.alter_column('books', 'n', existing_type=sa.INTEGER(), type_=sa.BigInteger())"
    r = review(tmp_path, up, "op.alter_column('books', 'n', existing_type=sa.BigInteger(), type_=sa.INTEGER())")
    assert rules(r) == ["type_change", "downgrade_type_change"]
    assert "rewrites the table" in r.warnings[0].message


def test_rename_suspected_mentions_expand_contract(tmp_path: Path) -> None:
    r = review(
        tmp_path,
        """
op.add_column('books', sa.Column('headline', sa.String(length=200), nullable=True))
op.drop_column('books', 'title')
""",
        """
op.add_column('books', sa.Column('title', sa.VARCHAR(length=200), nullable=True))
op.drop_column('books', 'headline')
""",
    )
    rename = next(w for w in r.warnings if w.rule == "rename_suspected")
    assert "expand/contract" in rename.message and "new_column_name='headline'" in rename.message


def test_rule_list_is_documented() -> None:
    helptext = (Path(__file__).resolve().parents[1] / "scripts" / "generate-migration.py").read_text()
    for rule in RULES:
        assert rule in helptext, rule


def test_names_the_review_cannot_read_are_not_unnamed(tmp_path: Path) -> None:
    """Real revisions name constraints with f-strings and module constants: that is a name, not None."""
    up = """
op.create_unique_constraint(op.f(f"{table_prefix}accounts_key"), f"{table_prefix}accounts", ["a", "b"])
op.drop_constraint(OLD_CONSTRAINT, "downloadables", type_="unique")
"""
    down = "op.create_unique_constraint(OLD_CONSTRAINT, 'downloadables', ['file_id'])"
    r = review(tmp_path, up, down)
    assert "unnamed_constraint" not in rules(r) and "downgrade_unnamed_constraint" not in rules(r)


def test_not_null_after_a_backfill_is_a_note(tmp_path: Path) -> None:
    """Backfill then SET NOT NULL in one revision (the fix the rule asks for): no warning; a note on PostgreSQL."""
    up = """
op.execute("SET LOCAL lock_timeout = '5s'")
op.execute("UPDATE organizations SET sso_enforced = false WHERE sso_enforced IS NULL")
op.alter_column("organizations", "sso_enforced", existing_type=sa.Boolean(), nullable=False)
"""
    down = 'op.alter_column("organizations", "sso_enforced", existing_type=sa.Boolean(), nullable=True)'
    r = review(tmp_path, up, down)
    assert rules(r) == [] and [n.rule for n in r.notes] == ["not_null_without_default"]
    assert "ACCESS EXCLUSIVE" in r.notes[0].message
    other = review(tmp_path, up.replace("UPDATE organizations", "UPDATE users"), down)
    assert rules(other) == ["not_null_without_default"]  # a backfill of another table does not count


def test_sqlmodel_revision_from_a_stock_env(tmp_path: Path) -> None:
    """Revisions written by Alembic's own env.py name SQLModel's type: AutoString reads as a VARCHAR."""
    up = """
op.add_column('hero', sa.Column('nick', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
op.drop_column('hero', 'alias')
op.alter_column('hero', 'name', existing_type=sa.VARCHAR(length=50), type_=sqlmodel.sql.sqltypes.AutoString(length=80))
"""
    down = """
op.alter_column('hero', 'name', existing_type=sqlmodel.sql.sqltypes.AutoString(length=80), type_=sa.VARCHAR(length=50))
op.add_column('hero', sa.Column('alias', sa.VARCHAR(), autoincrement=False, nullable=True))
op.drop_column('hero', 'nick')
"""
    r = review(tmp_path, up, down)
    assert rules(r) == ["drop_column", "rename_suspected", "downgrade_type_change"]
    assert [n.rule for n in r.notes] == ["type_change"]  # VARCHAR(50) -> AutoString(80): a widening
