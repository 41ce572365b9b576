"""Proof for every entry of references/troubleshooting.md.

Each test runs the wrong code, asserts the exact error text the reference quotes, then runs the
fix and asserts that it works. Entries whose behaviour depends on the driver run on every backend
(``engine`` / ``db_url`` / ``server_url`` fixtures); pure asyncio / ORM ones run on SQLite.
Programs that must own their event loops (two ``asyncio.run`` calls, pytest with function-scoped
loops, a fresh environment without greenlet) run as subprocesses.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy
from sqlalchemy import ForeignKey, Integer, String, bindparam, func, inspect, literal, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IllegalStateChangeError,
    IntegrityError,
    InvalidRequestError,
    MissingGreenlet,
    PendingRollbackError,
    SAWarning,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload
from sqlalchemy.orm.exc import DetachedInstanceError
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker
from templates.models import Post, User

SA_21 = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)
MISSING_GREENLET_20 = "greenlet_spawn has not been called; can't call await_only() here"
MISSING_GREENLET_21 = "greenlet_spawn has not been called; can't call await_() here"
MISSING_GREENLET = re.escape(MISSING_GREENLET_21 if SA_21 else MISSING_GREENLET_20)
SUBPROCESS_TIMEOUT = 60

# The wrong code below leaves driver coroutines un-awaited; that follow-up warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")


# Test-only models with the *default* lazy loading (lazy="select"), the setting that produces
# MissingGreenlet. The shared models in templates/models.py use lazy="raise" instead.
class TsAuthor(Base):
    __tablename__ = "ts_authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[TsBook]] = relationship(back_populates="author")


class TsBook(Base):
    __tablename__ = "ts_books"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int] = mapped_column(ForeignKey("ts_authors.id"))
    author: Mapped[TsAuthor] = relationship(back_populates="books")


@pytest.fixture(scope="session")
async def tables(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return engine


def engine_in(db_url: tuple[URL, dict[str, Any]], **settings: Any) -> AsyncEngine:
    """A private engine in the test namespace (pool experiments must not touch the shared one)."""
    url, connect_args = db_url
    return create_db_engine(
        DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args, **settings)
    )


def drop_unawaited_coroutines() -> None:
    """Collect the driver coroutines the wrong code left un-awaited, with their warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def run_python(
    code: str, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (tests dir and skill root importable)."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-c", code, *(args or [])],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


# --- MissingGreenlet ------------------------------------------------------------------------


async def test_missing_greenlet_expired_attribute_after_commit(tables: AsyncEngine) -> None:
    email = unique("mg") + "@example.com"
    # wrong: async_sessionmaker's default expire_on_commit=True
    sessionmaker = async_sessionmaker(tables)
    async with sessionmaker() as session:
        user = User(email=email, name="Ada")
        session.add(user)
        await session.commit()  # expires every attribute of `user`
        with pytest.raises(MissingGreenlet, match=MISSING_GREENLET):
            print(user.name)  # implicit refresh = I/O outside await
        drop_unawaited_coroutines()

    # fix 1: expire_on_commit=False (templates.database.create_sessionmaker)
    async with create_sessionmaker(tables)() as session:
        user = User(email="fix-" + email, name="Ada")
        session.add(user)
        await session.commit()
        assert user.name == "Ada"  # still loaded, no I/O

    # fix 2: refresh explicitly with await
    async with sessionmaker() as session:
        user = (await session.scalars(select(User).where(User.email == email))).one()
        await session.commit()
        await session.refresh(user)
        assert user.name == "Ada"

    async with create_sessionmaker(tables)() as session, session.begin():
        for u in (await session.scalars(select(User).where(User.email.in_([email, "fix-" + email])))).all():
            await session.delete(u)


async def test_missing_greenlet_lazy_load_of_relationship(tables: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(tables)
    name = unique("author")
    async with sessionmaker() as session, session.begin():
        session.add(TsAuthor(name=name, books=[TsBook(title="One"), TsBook(title="Two")]))

    async with sessionmaker() as session:
        author = (await session.scalars(select(TsAuthor).where(TsAuthor.name == name))).one()
        with pytest.raises((MissingGreenlet, StatementError), match=MISSING_GREENLET) as err:
            print(len(author.books))  # wrong: lazy="select" loads on attribute access
        # asyncpg raises MissingGreenlet itself; aiosqlite and aiomysql wrap it in StatementError
        # ("(sqlalchemy.exc.MissingGreenlet) greenlet_spawn ...", with .orig = the MissingGreenlet)
        if isinstance(err.value, StatementError):
            assert isinstance(err.value.orig, MissingGreenlet)
        drop_unawaited_coroutines()

    async with sessionmaker() as session:
        # fix 1: eager-load in the query
        stmt = select(TsAuthor).where(TsAuthor.name == name).options(selectinload(TsAuthor.books))
        author = (await session.scalars(stmt)).one()
        assert sorted(b.title for b in author.books) == ["One", "Two"]

    async with sessionmaker() as session:
        # fix 2: load on demand through AsyncAttrs (Base includes it)
        author = (await session.scalars(select(TsAuthor).where(TsAuthor.name == name))).one()
        books = await author.awaitable_attrs.books
        assert len(books) == 2

    async with sessionmaker() as session, session.begin():
        author = (await session.scalars(select(TsAuthor).where(TsAuthor.name == name))).one()
        for book in await author.awaitable_attrs.books:
            await session.delete(book)
        await session.delete(author)


async def test_lazy_raise_relationship_not_loaded(tables: AsyncEngine) -> None:
    email = unique("lr") + "@example.com"
    sessionmaker = create_sessionmaker(tables)
    async with sessionmaker() as session, session.begin():
        session.add(User(email=email, name="Lin", posts=[Post(title="p")]))
    async with sessionmaker() as session:
        user = (await session.scalars(select(User).where(User.email == email))).one()
        with pytest.raises(InvalidRequestError, match=r"'User\.posts' is not available due to lazy='raise'"):
            print(user.posts)
        # awaitable_attrs goes through the same lazy loader: no way past lazy="raise"
        with pytest.raises(InvalidRequestError, match=r"'User\.posts' is not available due to lazy='raise'"):
            await user.awaitable_attrs.posts
        await session.refresh(user, ["posts"])  # explicit load: works with lazy="raise"
        assert [p.title for p in user.posts] == ["p"]
        session.expunge_all()
        user = (await session.scalars(select(User).where(User.email == email).options(selectinload(User.posts)))).one()
        assert [p.title for p in user.posts] == ["p"]
        await session.delete(user)
        await session.commit()


# --- DetachedInstanceError ------------------------------------------------------------------


async def test_detached_instance_error(tables: AsyncEngine) -> None:
    email = unique("di") + "@example.com"
    async with create_sessionmaker(tables)() as session, session.begin():
        session.add(User(email=email, name="Grace"))

    async def get_user_wrong(sessionmaker: async_sessionmaker[AsyncSession]) -> User:
        async with sessionmaker() as session:
            user = (await session.scalars(select(User).where(User.email == email))).one()
            await session.commit()  # expire_on_commit=True expires `user`
        return user  # the session is closed: nobody can reload it

    user = await get_user_wrong(async_sessionmaker(tables))
    with pytest.raises(
        DetachedInstanceError, match="is not bound to a Session; attribute refresh operation cannot proceed"
    ):
        print(user.name)

    # fix: expire_on_commit=False keeps the loaded values after commit and close
    user = await get_user_wrong(create_sessionmaker(tables))
    assert user.name == "Grace"
    assert inspect(user).detached

    async with create_sessionmaker(tables)() as session, session.begin():
        await session.delete(await session.merge(user))


# --- session state errors -------------------------------------------------------------------


async def test_pending_rollback_after_failed_flush(tables: AsyncEngine) -> None:
    email = unique("pr") + "@example.com"
    sessionmaker = create_sessionmaker(tables)
    async with sessionmaker() as session, session.begin():
        session.add(User(email=email, name="first"))

    async with sessionmaker() as session:
        session.add(User(email=email, name="duplicate"))
        with pytest.raises(IntegrityError):
            await session.commit()
        with pytest.raises(
            PendingRollbackError,
            match="This Session's transaction has been rolled back due to a previous exception during flush",
        ):
            await session.scalar(select(func.count()).select_from(User))  # wrong: keeps using the session

    async with sessionmaker() as session:
        session.add(User(email=email, name="duplicate"))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()  # fix: roll back, then the session is usable again
        assert await session.scalar(select(User.name).where(User.email == email)) == "first"

    async with sessionmaker() as session, session.begin():
        await session.delete((await session.scalars(select(User).where(User.email == email))).one())


async def test_transaction_already_begun(tables: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(tables)
    async with sessionmaker() as session:
        await session.execute(select(literal(1)))  # autobegins a transaction
        with pytest.raises(InvalidRequestError, match="A transaction is already begun on this Session"):
            async with session.begin():  # wrong: begin() after the session already started one
                pass

    async with sessionmaker.begin() as session:  # fix: begin first (commits at the end of the block)
        assert (await session.execute(select(literal(1)))).scalar_one() == 1


async def test_missing_await(tables: AsyncEngine) -> None:
    async with create_sessionmaker(tables)() as session:
        result = session.execute(select(literal(1)))  # wrong: no await -> a coroutine
        with pytest.raises(AttributeError, match="'coroutine' object has no attribute 'scalar_one'"):
            result.scalar_one()
        result.close()  # (silences "coroutine ... was never awaited")
        assert (await session.execute(select(literal(1)))).scalar_one() == 1


# --- drivers and parameters -----------------------------------------------------------------


def test_sync_driver_in_async_engine() -> None:
    with pytest.raises(
        InvalidRequestError,
        match="The asyncio extension requires an async driver to be used. The loaded 'pysqlite' is not async",
    ):
        create_async_engine("sqlite:///unused.db")  # wrong: no driver named -> the sync default
    engine = create_async_engine("sqlite+aiosqlite:///unused.db")  # fix: name the async driver
    assert engine.dialect.driver == "aiosqlite"
    if not SA_21:  # 2.0: postgresql:// means psycopg2 (2.1: psycopg 3, which has an async mode)
        with pytest.raises(ModuleNotFoundError, match="No module named 'psycopg2'"):
            create_async_engine("postgresql://app@db/app")
    assert not (ROOT / "unused.db").exists()


async def test_untyped_text_parameter_on_asyncpg(engine: AsyncEngine, backend: str) -> None:
    async with engine.connect() as conn:
        if backend == "postgresql":
            with pytest.raises(DBAPIError, match=r"invalid input for query argument \$1: 1 \(expected str, got int\)"):
                await conn.execute(text("SELECT :n"), {"n": 1})  # wrong: PostgreSQL types $1 as text
            await conn.rollback()
        else:
            assert (await conn.execute(text("SELECT :n"), {"n": 1})).scalar_one() == 1  # others accept it
        typed = text("SELECT :n").bindparams(bindparam("n", type_=Integer))  # fix: give the type
        assert (await conn.execute(typed, {"n": 1})).scalar_one() == 1
        assert (await conn.execute(select(literal(1)))).scalar_one() == 1  # or let SQLAlchemy bind it


# --- attached to a different loop -----------------------------------------------------------


def two_loops_wrong(url: str) -> None:
    engine = create_db_engine(DatabaseSettings(url=url))  # module-level in real code

    async def ping() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()

    asyncio.run(ping())  # the pooled connection now belongs to this loop
    asyncio.run(ping())  # a new loop reuses it -> RuntimeError


def two_loops_fixed(url: str) -> None:
    async def ping() -> int:
        engine = create_db_engine(DatabaseSettings(url=url))  # created inside the running loop
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text("SELECT 1"))).scalar_one()
        finally:
            await engine.dispose()  # close its connections before the loop ends

    assert asyncio.run(ping()) == 1
    assert asyncio.run(ping()) == 1


DIFFERENT_LOOP = r"Task <Task pending .*> got Future <Future pending.*> attached to a different loop"


async def test_engine_used_in_two_event_loops(server_url: str, backend: str) -> None:
    # SELECT 1 only: touches no data on the server.
    wrong = run_python(f"import test_troubleshooting as t; t.two_loops_wrong({server_url!r})")
    if backend == "sqlite":
        # aiosqlite runs each connection in its own thread: the reused connection still works.
        assert wrong.returncode == 0, wrong.stderr[-2000:]
    else:
        assert wrong.returncode != 0
        assert re.search(DIFFERENT_LOOP, wrong.stderr), wrong.stderr[-3000:]
    fixed = run_python(f"import test_troubleshooting as t; t.two_loops_fixed({server_url!r})")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "Traceback" not in fixed.stderr, fixed.stderr[-3000:]


PYTEST_FUNCTION_LOOPS = """
import os
import pytest
from sqlalchemy import literal, select
from templates.database import DatabaseSettings, create_db_engine

engine = create_db_engine(DatabaseSettings(url=os.environ["DATABASE_URL"]))  # module level


@pytest.mark.parametrize("n", [1, 2])
async def test_select(n):  # each test gets its own event loop (loop scope "function")
    async with engine.connect() as conn:
        assert (await conn.execute(select(literal(n)))).scalar_one() == n
"""

PYTEST_FUNCTION_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""

PYTEST_SESSION_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""


async def test_module_level_engine_with_function_scoped_loops(server_url: str, backend: str, tmp_path: Path) -> None:
    (tmp_path / "test_module_engine.py").write_text(PYTEST_FUNCTION_LOOPS)

    def run_pytest(ini: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "pytest.ini").write_text(ini)
        env = dict(os.environ, DATABASE_URL=server_url, PYTHONPATH=str(ROOT))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                str(tmp_path / "pytest.ini"),
                "--rootdir",
                str(tmp_path),
                str(tmp_path / "test_module_engine.py"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
        )

    wrong = await asyncio.to_thread(run_pytest, PYTEST_FUNCTION_INI)
    if backend == "sqlite":
        assert wrong.returncode == 0, wrong.stdout[-3000:]
    else:
        assert wrong.returncode == 1, wrong.stdout[-3000:]
        assert "1 failed, 1 passed" in wrong.stdout, wrong.stdout[-3000:]
        assert re.search(r"attached to a different loop", wrong.stdout), wrong.stdout[-3000:]
    fixed = await asyncio.to_thread(run_pytest, PYTEST_SESSION_INI)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert "2 passed" in fixed.stdout


# --- pool exhaustion ------------------------------------------------------------------------


async def test_pool_exhausted_by_unclosed_sessions(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = engine_in(db_url, pool_size=2, max_overflow=0, pool_timeout=0.5)
    sessionmaker = create_sessionmaker(engine)
    leaked: list[AsyncSession] = []
    try:
        # wrong: sessions that are never closed keep their connection checked out
        for _ in range(2):
            session = sessionmaker()
            await session.execute(text("SELECT 1"))
            leaked.append(session)
        assert isinstance(engine.pool, AsyncAdaptedQueuePool)
        with pytest.raises(
            PoolTimeoutError, match=r"QueuePool limit of size 2 overflow 0 reached, connection timed out, timeout 0\.50"
        ):
            async with sessionmaker() as session:
                await session.execute(text("SELECT 1"))
    finally:
        for session in leaked:
            await session.close()
    assert engine.pool.checkedout() == 0
    await engine.dispose()

    # fix: `async with` returns the connection; 20 concurrent tasks share 2 connections (a pool
    # timeout far above the work, so a slow machine never turns the queueing into a failure)
    engine = engine_in(db_url, pool_size=2, max_overflow=0, pool_timeout=120)
    sessionmaker = create_sessionmaker(engine)

    async def handler(n: int) -> int:
        async with sessionmaker() as session:
            return (await session.execute(select(literal(n)))).scalar_one()

    results = await asyncio.gather(*(handler(n) for n in range(20)))
    assert results == list(range(20))
    assert engine.pool.checkedout() == 0
    await engine.dispose()


# --- one session in several tasks -----------------------------------------------------------


async def count_rows_wrong(session: AsyncSession) -> list[int | None]:
    return list(
        await asyncio.gather(
            session.scalar(select(func.count()).select_from(User)),
            session.scalar(select(func.count()).select_from(Post)),
        )
    )


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int | None]:
    async def count(model: type[Base]) -> int | None:
        async with sessionmaker() as session:  # one session per task
            return await session.scalar(select(func.count()).select_from(model))

    return list(await asyncio.gather(count(User), count(Post)))


async def test_one_session_shared_by_concurrent_tasks(tables: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(tables)
    session = sessionmaker()
    with pytest.raises(
        InvalidRequestError,
        match="This session is provisioning a new connection; concurrent operations are not permitted",
    ):
        await count_rows_wrong(session)
    # gather() left the sibling task running inside the session: closing now is refused too
    with pytest.raises(
        IllegalStateChangeError,
        match=r"Method 'close\(\)' can't be called here; method '_connection_for_bind\(\)' is already in progress",
    ):
        await session.close()
    for _ in range(200):  # once the sibling finished, close() works
        try:
            await session.close()
            break
        except IllegalStateChangeError:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the session never became closable")
    assert not session.in_transaction()

    counts = await count_rows(sessionmaker)  # fix: one session per task
    assert all(isinstance(c, int) for c in counts)


# --- garbage collector cleans up a connection -------------------------------------------------


async def forget_to_close(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    session = sessionmaker()  # wrong: no `async with`, no `await session.close()`
    await session.execute(text("SELECT 1"))


async def close_properly(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))


async def test_gc_cleans_up_non_checked_in_connection(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = engine_in(db_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await forget_to_close(sessionmaker)
            gc.collect()
            await asyncio.sleep(0.05)
        messages = [str(w.message) for w in caught if issubclass(w.category, SAWarning)]
        assert any(
            "The garbage collector is trying to clean up non-checked-in connection" in m
            and "Please ensure that SQLAlchemy pooled connections are returned to the pool explicitly" in m
            for m in messages
        ), messages
        assert engine.pool.checkedout() == 0  # dropped, not returned: its transaction state is lost

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await close_properly(sessionmaker)
            gc.collect()
            await asyncio.sleep(0.05)
        assert not [w for w in caught if "garbage collector" in str(w.message)]
        assert engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


def exit_without_dispose(url: str) -> None:
    engine = create_db_engine(DatabaseSettings(url=url))

    async def main() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        # wrong: the pooled connection outlives the loop

    asyncio.run(main())


def exit_with_dispose(url: str) -> None:
    async def main() -> None:
        engine = create_db_engine(DatabaseSettings(url=url))
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    asyncio.run(main())


async def test_program_exit_without_dispose(server_url: str, backend: str) -> None:
    wrong = run_python(f"import test_troubleshooting as t; t.exit_without_dispose({server_url!r})")
    if backend == "mysql":
        # aiomysql's Connection.__del__ runs at interpreter exit, after the loop was closed
        assert "RuntimeError: Event loop is closed" in wrong.stderr, wrong.stderr[-3000:]
    fixed = run_python(f"import test_troubleshooting as t; t.exit_with_dispose({server_url!r})")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert fixed.stderr.strip() == "", fixed.stderr[-3000:]


# --- QueuePool with an async engine ---------------------------------------------------------


def test_queuepool_with_async_engine() -> None:
    with pytest.raises(ArgumentError, match="Pool class QueuePool cannot be used with asyncio engine"):
        create_async_engine("sqlite+aiosqlite:///unused.db", poolclass=QueuePool)  # wrong
    engine = create_async_engine("sqlite+aiosqlite:///unused.db", poolclass=AsyncAdaptedQueuePool)  # fix
    assert isinstance(engine.pool, AsyncAdaptedQueuePool)
    assert not (ROOT / "unused.db").exists()  # no connection was made


# --- greenlet missing -----------------------------------------------------------------------

NO_GREENLET_PROGRAM = """
import asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.connect() as conn:
        print((await conn.execute(text("SELECT 1"))).scalar_one())
    await engine.dispose()

asyncio.run(main())
"""


@pytest.fixture(scope="session")
def no_greenlet_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SQLAlchemy (the running version) + aiosqlite without their dependencies: no greenlet.

    Like ``pip install --no-deps --target``, but the installed packages are copied, so no package
    index is needed and the test never depends on the network."""
    import aiosqlite
    import typing_extensions

    target = tmp_path_factory.mktemp("no-greenlet")
    for module in (sqlalchemy, aiosqlite, typing_extensions):
        source = Path(module.__file__ or "").resolve()
        if source.name == "__init__.py":
            shutil.copytree(source.parent, target / source.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / source.name)
    if (target / "greenlet").exists():
        pytest.fail("greenlet was copied although only SQLAlchemy, aiosqlite and typing_extensions were asked for")
    return target


def run_isolated(site: Path, program: str) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so only the stdlib and `site` are importable (greenlet is absent).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-S", "-c", program],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_greenlet_missing(no_greenlet_site: Path) -> None:
    probe = run_isolated(no_greenlet_site, "import sqlalchemy, sys; print(sqlalchemy.__version__)")
    assert probe.stdout.strip() == sqlalchemy.__version__, probe.stderr
    wrong = run_isolated(no_greenlet_site, NO_GREENLET_PROGRAM)
    assert wrong.returncode != 0
    if SA_21:
        # 2.1: greenlet is only installed by the [asyncio] extra; the import itself fails
        assert (
            "ImportError: The SQLAlchemy asyncio module requires that the Python 'greenlet' library is installed."
            in wrong.stderr
        ), wrong.stderr
        assert "pip install sqlalchemy[asyncio]" in wrong.stderr
    else:
        # 2.0: the import works; the first awaited database call fails
        assert (
            "ValueError: the greenlet library is required to use this function. No module named 'greenlet'"
            in wrong.stderr
        ), wrong.stderr
    # fix: install greenlet (what `pip install "sqlalchemy[asyncio]"` adds)
    import greenlet

    greenlet_dir = Path(greenlet.__file__).resolve().parent
    fixed_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    fixed_env["PYTHONPATH"] = os.pathsep.join([str(no_greenlet_site), str(greenlet_dir.parent)])
    fixed = subprocess.run(
        [sys.executable, "-S", "-c", NO_GREENLET_PROGRAM],
        cwd=no_greenlet_site,
        env=fixed_env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "1"


# --- Alembic from inside a running loop -----------------------------------------------------

ALEMBIC_ENV = """
import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

config = context.config


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = async_engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())  # standalone: `alembic upgrade head`
    else:
        do_run_migrations(connection)  # called by the app with a connection


run_migrations_online()
"""

ALEMBIC_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "ts0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("ts_migrated", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("ts_migrated")
"""


def alembic_config(directory: Path, url: str) -> Any:
    from alembic.config import Config

    (directory / "versions").mkdir(parents=True, exist_ok=True)
    (directory / "env.py").write_text(ALEMBIC_ENV)
    (directory / "script.py.mako").write_text("")
    (directory / "versions" / "ts0001_create.py").write_text(ALEMBIC_REVISION)
    cfg = Config()
    cfg.set_main_option("script_location", str(directory))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def upgrade_on_startup_wrong(cfg: Any) -> None:
    from alembic import command

    command.upgrade(cfg, "head")  # env.py calls asyncio.run() inside this running loop


async def upgrade_on_startup_in_thread(cfg: Any) -> None:
    from alembic import command

    await asyncio.to_thread(command.upgrade, cfg, "head")  # a thread has no running loop


async def upgrade_on_startup_with_connection(engine: AsyncEngine, cfg: Any) -> None:
    from alembic import command

    def upgrade(connection: Any) -> None:
        cfg.attributes["connection"] = connection  # env.py uses it instead of asyncio.run()
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


async def migrated(url: str) -> bool:
    engine = create_db_engine(DatabaseSettings(url=url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: inspect(c).has_table("ts_migrated"))
    finally:
        await engine.dispose()


async def test_alembic_upgrade_from_running_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    cfg = alembic_config(tmp_path / "migrations", url)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... was never awaited"
        with pytest.raises(RuntimeError, match=r"asyncio\.run\(\) cannot be called from a running event loop"):
            await upgrade_on_startup_wrong(cfg)
        gc.collect()
    assert not await migrated(url)

    await upgrade_on_startup_in_thread(cfg)
    assert await migrated(url)

    url2 = f"sqlite+aiosqlite:///{tmp_path / 'app2.db'}"
    cfg2 = alembic_config(tmp_path / "migrations2", url2)
    engine = create_db_engine(DatabaseSettings(url=url2))
    try:
        await upgrade_on_startup_with_connection(engine, cfg2)
    finally:
        await engine.dispose()
    assert await migrated(url2)


# --- the reference itself -------------------------------------------------------------------


def test_troubleshooting_reference_quotes_tested_errors() -> None:
    """Every error text the reference quotes in its headings appears in this file's assertions."""
    doc = (ROOT / "references" / "troubleshooting.md").read_text()
    source = Path(__file__).read_text() + (TESTS / "test_pooling.py").read_text()
    quoted = re.findall(r"^### `([^`]+)`", doc, flags=re.M)
    assert len(quoted) >= 9, quoted
    flat = source.replace("\\", "")
    missing = [
        q
        for q in quoted
        if q.replace("...", "") not in flat and not all(part.strip() in flat for part in q.split("..."))
    ]
    assert not missing, f"quoted in the reference but never asserted here: {missing}"
