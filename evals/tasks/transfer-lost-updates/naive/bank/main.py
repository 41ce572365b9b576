# DELIBERATELY WRONG example for the evals (naive/ of transfer-lost-updates): never copy it.
"""The transfers API: ``uvicorn bank.main:app`` with DATABASE_URL set."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

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
    # Lock the rows while we read them: a concurrent transfer now waits for our commit
    # instead of overwriting the balance we are about to write.
    source = await session.get(Account, body.from_id, with_for_update=True)
    target = await session.get(Account, body.to_id, with_for_update=True)
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
