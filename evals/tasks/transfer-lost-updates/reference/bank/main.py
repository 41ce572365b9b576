"""The transfers API: ``uvicorn bank.main:app`` with DATABASE_URL set."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from .db import SessionDep, lifespan
from .models import Account, Transfer

app = FastAPI(lifespan=lifespan)


class AccountIn(BaseModel):
    owner: str
    balance: int = Field(ge=0)


class AccountOut(BaseModel):
    id: int
    owner: str
    balance: int


class TransferIn(BaseModel):
    from_id: int
    to_id: int
    amount: int = Field(gt=0)


class TransferOut(BaseModel):
    id: int
    from_id: int
    to_id: int
    amount: int


@app.post("/accounts", status_code=201)
async def open_account(body: AccountIn, session: SessionDep) -> AccountOut:
    account = Account(owner=body.owner, balance=body.balance)
    session.add(account)
    await session.commit()
    return AccountOut(id=account.id, owner=account.owner, balance=account.balance)


@app.get("/accounts/{account_id}")
async def get_account(account_id: int, session: SessionDep) -> AccountOut:
    account = await session.get(Account, account_id)
    if account is None:
        raise HTTPException(404, "no such account")
    return AccountOut(id=account.id, owner=account.owner, balance=account.balance)


@app.post("/transfers", status_code=201)
async def transfer(body: TransferIn, session: SessionDep) -> TransferOut:
    if body.from_id == body.to_id:
        raise HTTPException(422, "cannot transfer to the same account")
    # Lock both rows before reading the balances, always in primary-key order: a concurrent
    # transfer waits here instead of overwriting our balance (lost update), and two transfers in
    # opposite directions queue instead of each holding one row the other needs (deadlock).
    locked = await session.scalars(
        select(Account)
        .where(Account.id.in_([body.from_id, body.to_id]))
        .order_by(Account.id)
        .with_for_update()
    )
    accounts = {account.id: account for account in locked}
    source, target = accounts.get(body.from_id), accounts.get(body.to_id)
    if source is None or target is None:
        raise HTTPException(404, "no such account")
    if source.balance < body.amount:
        raise HTTPException(409, "insufficient funds")
    source.balance -= body.amount
    target.balance += body.amount
    record = Transfer(from_id=source.id, to_id=target.id, amount=body.amount)
    session.add(record)
    await session.commit()
    return TransferOut(id=record.id, from_id=record.from_id, to_id=record.to_id, amount=record.amount)
