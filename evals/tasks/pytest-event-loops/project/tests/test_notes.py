from __future__ import annotations

from sqlalchemy import text

from notes.repo import archive, count_notes, create_note, list_notes, search, tagged


async def test_create_and_list(session):
    await create_note(session, "groceries", "milk, eggs")
    await create_note(session, "ideas")
    assert [n.title for n in await list_notes(session)] == ["groceries", "ideas"]


async def test_each_test_starts_empty(session):
    assert await count_notes(session) == 0


async def test_search_matches_title_and_body(session):
    await create_note(session, "Trip", "book the train")
    await create_note(session, "Train schedule")
    await create_note(session, "unrelated")
    assert [n.title for n in await search(session, "train")] == ["Trip", "Train schedule"]


async def test_tags(session):
    await create_note(session, "a", tags=["work", "urgent"])
    await create_note(session, "b", tags=["home"])
    await create_note(session, "c", tags=["work"])
    assert [n.title for n in await tagged(session, "work")] == ["a", "c"]


async def test_archive_hides_note(session):
    note = await create_note(session, "old")
    assert await archive(session, note.id)
    assert await list_notes(session) == []
    assert [n.title for n in await list_notes(session, include_archived=True)] == ["old"]


async def test_archive_missing_note(session):
    assert not await archive(session, 123456)


async def test_engine_is_usable_directly(engine):
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
