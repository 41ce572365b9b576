"""Data access for notes. Functions take the caller's session and never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Note, Tag


async def create_note(session: AsyncSession, title: str, body: str = "", tags: Sequence[str] = ()) -> Note:
    note = Note(title=title, body=body, tags=[Tag(name=t) for t in tags])
    session.add(note)
    await session.flush()
    return note


async def list_notes(session: AsyncSession, *, include_archived: bool = False) -> list[Note]:
    query = select(Note).order_by(Note.id)
    if not include_archived:
        query = query.where(Note.archived.is_(False))
    return list(await session.scalars(query))


async def search(session: AsyncSession, text: str) -> list[Note]:
    pattern = f"%{text.lower()}%"
    query = select(Note).where(func.lower(Note.title).like(pattern) | func.lower(Note.body).like(pattern))
    return list(await session.scalars(query.order_by(Note.id)))


async def tagged(session: AsyncSession, tag: str) -> list[Note]:
    query = select(Note).join(Note.tags).where(Tag.name == tag).order_by(Note.id)
    return list(await session.scalars(query))


async def archive(session: AsyncSession, note_id: int) -> bool:
    note = await session.get(Note, note_id)
    if note is None:
        return False
    note.archived = True
    await session.flush()
    return True


async def count_notes(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Note)) or 0)
