"""Shared helpers for the task graders (``evals/tasks/*/grade.py``; the method is in evals/README.md).

A grader runs one solution directory (a copy of the task's ``project/`` after an agent worked on it)
against real databases and prints one line per check, then the score::

    PASS name[backend]
    FAIL name[backend]: why
    SKIP [backend]: why it could not run
    score X/Y

Exit codes: 0 every check passed · 1 a check failed · 2 bad arguments · 4 nothing could run (no
server URL for any of the task's backends, or a missing tool such as pgbouncer).

Servers come from ``TEST_POSTGRES_URL`` / ``TEST_MYSQL_URL`` (SQLite is always available). Every run
works in a database it creates (``evalgrade_<hex>``) and drops afterwards, on a copy of the
solution in a temporary directory: the solution folder and other data are never changed. With
several backends the grader runs itself once per backend in a child process, so module-level
state of the solution (an engine made at import) never crosses backends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # never leave __pycache__ in a solution or reference folder

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

SERVER_VARS = {"postgresql": "TEST_POSTGRES_URL", "mysql": "TEST_MYSQL_URL"}
EXAMPLE_URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+aiomysql://root@127.0.0.1:3306/test",
}
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 4
RUN_DEADLINE = 600  # a hang guard for one backend's checks, far above the normal few seconds; on
# expiry the run is cancelled, so its scratch database is still dropped
CHILD_TIMEOUT = 900  # the parent's guard for a child that does not even get to cancel
HTTP_TIMEOUT = 60.0  # per request: generous, a loaded CI machine is slow, a hang is not


def one_line(text_: object, limit: int = 300) -> str:
    flat = " ".join(str(text_).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")


class Report:
    """The checks of one backend run. Every name in ``names`` is printed exactly once, so the
    score's denominator does not depend on how far a broken solution got."""

    def __init__(self, backend: str, names: list[str]) -> None:
        self.backend = backend
        self.names = list(names)
        self.results: dict[str, tuple[bool, str]] = {}

    def label(self, name: str) -> str:
        return f"{name}[{self.backend}]"

    def record(self, name: str, ok: bool, why: str = "") -> bool:
        if name not in self.names:
            raise KeyError(f"grader bug: unknown check {name!r}")
        if name in self.results:
            raise KeyError(f"grader bug: check {name!r} reported twice")
        self.results[name] = (ok, one_line(why))
        print(f"PASS {self.label(name)}" if ok else f"FAIL {self.label(name)}: {one_line(why)}", flush=True)
        return ok

    def check(self, name: str, ok: bool, why: str = "") -> bool:
        return self.record(name, bool(ok), why if not ok else "")

    def fail_rest(self, why: str, names: list[str] | None = None) -> None:
        """Fail every check not reported yet (or those of ``names`` not reported yet)."""
        for name in self.names:
            if name not in self.results and (names is None or name in names):
                self.record(name, False, why)

    def finish(self) -> tuple[int, int]:
        self.fail_rest("not reached (an earlier step failed)")
        return sum(ok for ok, _ in self.results.values()), len(self.names)


def server_url(backend: str) -> str | None:
    """The server URL of a backend from the environment (None when unset); SQLite needs none."""
    var = SERVER_VARS.get(backend)
    if var is None:
        return "sqlite+aiosqlite://"
    return os.environ.get(var) or None


def missing_backend_reason(backend: str) -> str | None:
    var = SERVER_VARS.get(backend)
    if var and not os.environ.get(var):
        return f"{backend} not graded: set {var}={EXAMPLE_URLS[backend]} (your server's URL) to grade it"
    return None


# --- the command line -------------------------------------------------------------------------


@dataclass
class Task:
    """What a grade.py declares: its checks, the backends it runs on and the function that runs them.

    ``run(solution_copy, backend, report)`` is a coroutine; ``extra_need(backend)`` returns why the
    grader cannot run here (a missing tool), or None.
    """

    checks: list[str]
    backends: tuple[str, ...]
    run: Callable[[Path, str, Report], Any]
    extra_need: Callable[[str], str | None] | None = None


def main(task: Task, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a solution directory of this eval task.")
    parser.add_argument("solution", type=Path, help="the solution folder (same shape as the task's project/)")
    parser.add_argument(
        "--backend",
        action="append",
        choices=task.backends,
        help="grade only on this backend (repeatable; default: every backend with a server URL)",
    )
    args = parser.parse_args(argv)
    solution: Path = args.solution.resolve()
    if not solution.is_dir():
        print(f"{solution} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    selected = list(dict.fromkeys(args.backend or task.backends))
    runnable = []
    for backend in selected:
        reason = missing_backend_reason(backend) or (task.extra_need(backend) if task.extra_need else None)
        if reason:
            print(f"SKIP [{backend}]: {reason}", flush=True)
        else:
            runnable.append(backend)
    if not runnable:
        print("score 0/0", flush=True)
        return EXIT_SKIP
    if len(runnable) == 1:
        passed, total = run_backend(task, solution, runnable[0])
    else:
        passed = total = 0
        for backend in runnable:
            p, t = run_child(Path(sys.argv[0]).resolve(), solution, backend, len(task.checks))
            passed, total = passed + p, total + t
    print(f"score {passed}/{total}", flush=True)
    return EXIT_OK if passed == total else EXIT_FAIL


def run_child(grader: Path, solution: Path, backend: str, expected: int) -> tuple[int, int]:
    """This grader on one backend in a child process; its check lines are passed through."""
    try:
        proc = subprocess.run(
            [sys.executable, str(grader), str(solution), "--backend", backend],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            env=child_env(),
        )
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"grader timed out after {CHILD_TIMEOUT}s"
    sys.stderr.write(err)
    score = None
    for line in out.splitlines():
        m = re.fullmatch(r"score (\d+)/(\d+)", line.strip())
        if m:
            score = int(m[1]), int(m[2])
        else:
            print(line, flush=True)
    if score is None:
        print(
            f"FAIL grader[{backend}]: the run for {backend} ended without a score: {one_line(err[-300:])}", flush=True
        )
        return 0, expected
    return score


def run_backend(task: Task, solution: Path, backend: str) -> tuple[int, int]:
    report = Report(backend, task.checks)
    with tempfile.TemporaryDirectory(prefix="evalgrade-") as tmp:
        copy = Path(tmp) / "solution"
        shutil.copytree(
            solution,
            copy,
            ignore=shutil.ignore_patterns(
                "__pycache__", ".venv", ".git", ".pytest_cache", "*.db", "*.db-wal", "*.db-shm"
            ),
        )
        cwd = os.getcwd()
        try:
            os.chdir(copy)
            asyncio.run(asyncio.wait_for(task.run(copy, backend, report), RUN_DEADLINE))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            report.fail_rest(f"grader stopped: {describe(exc)}")
        finally:
            os.chdir(cwd)
    return report.finish()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


# --- databases -------------------------------------------------------------------------------


@asynccontextmanager
async def scratch_database(backend: str) -> AsyncIterator[str]:
    """A new, empty database on the backend's server; yields its URL (as a DATABASE_URL) and drops it."""
    name = f"evalgrade_{secrets.token_hex(4)}"
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="evalgrade-db-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / (name + '.db')}"
        return
    base = make_url(server_url(backend) or "")
    admin = create_async_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if backend == "postgresql":
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                if backend == "postgresql":
                    # FORCE ends the sessions still connected to it (a solution that leaked them).
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    # A leaked connection in an open transaction holds metadata locks and would
                    # make DROP DATABASE wait forever: end this database's sessions first.
                    await conn.execute(text("SET SESSION lock_wait_timeout = 120"))
                    leaked = await conn.scalars(
                        text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"),
                        {"db": name},
                    )
                    for session_id in leaked.all():
                        with contextlib.suppress(Exception):  # it may have ended meanwhile
                            await conn.execute(text(f"KILL {int(session_id)}"))
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await admin.dispose()


WAIT_FOR_QUEUE = 60.0  # seconds: a bound, not a delay (the wait ends as soon as the requests queue)


async def lock_waiters(engine: Any, backend: str) -> int:
    """Sessions of ``engine``'s (scratch) database that wait for a lock right now (server backends)."""
    if backend == "postgresql":
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    else:
        # MariaDB does not always list a transaction waiting in its first statement in innodb_trx; a
        # statement still running in this database (other than this one) is waiting.
        sql = (
            "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
            "AND command = 'Query' AND id <> CONNECTION_ID()"
        )
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql)) or 0)


async def queued(engine: Any, backend: str, count: int, tasks: list[Any], bound: float = WAIT_FOR_QUEUE) -> None:
    """Wait (at most ``bound`` seconds) until ``count`` sessions wait for a lock or the tasks are done."""
    deadline = asyncio.get_running_loop().time() + bound
    while asyncio.get_running_loop().time() < deadline:
        if all(t.done() for t in tasks) or await lock_waiters(engine, backend) >= count:
            return
        await asyncio.sleep(0.05)


# --- sign-ups that must tell the truth (apps with a ``users`` table and ``POST /users``) ---------
# Checks signup_works, duplicate_signup_409, signup_confirmed_after_commit, double_click_one_account.
# To make the race happen every time, writes to ``users`` are blocked on the grader's own
# connection until the requests queue behind the lock (or answer).


async def block_user_writes(engine: Any, backend: str) -> Any:
    """Reads of ``users`` go on, inserts wait until ``release``."""
    conn = await engine.connect()
    if backend == "postgresql":
        await conn.begin()
        await conn.execute(text("LOCK TABLE users IN SHARE MODE"))
    else:
        await conn.execute(text("LOCK TABLES users READ"))
    return conn


async def release(conn: Any, backend: str) -> None:
    if backend == "postgresql":
        await conn.commit()
    else:
        await conn.execute(text("UNLOCK TABLES"))
    await conn.close()


async def count_users(engine: Any, email: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}) or 0)


async def signup_checks(client: Any, probe: Any, backend: str, report: Report) -> None:
    def sign_up(email: str, name: str = "Ann") -> asyncio.Task[Any]:
        return asyncio.create_task(client.post("/users", json={"email": email, "name": name}))

    r = await sign_up("ann@example.com")
    stored = await count_users(probe, "ann@example.com")
    report.check(
        "signup_works",
        r.status_code == 201 and stored == 1,
        f"POST /users answered {r.status_code}; {stored} rows stored",
    )

    again = await sign_up("ann@example.com", "Ann again")
    stored = await count_users(probe, "ann@example.com")
    report.check(
        "duplicate_signup_409",
        again.status_code == 409 and stored == 1,
        f"signing up again with a registered email answered {again.status_code} (expected 409); "
        f"{stored} rows with that email",
    )

    # Writes to users are blocked: a sign-up must wait for its commit instead of confirming first.
    lock = await block_user_writes(probe, backend)
    task = sign_up("bob@example.com", "Bob")
    await queued(probe, backend, 1, [task])
    early = task.done()
    await release(lock, backend)
    r = await asyncio.wait_for(task, HTTP_TIMEOUT)
    stored = await count_users(probe, "bob@example.com")
    report.check(
        "signup_confirmed_after_commit",
        not early and r.status_code == 201 and stored == 1,
        f"the sign-up answered {r.status_code} while its row could not be written yet"
        if early
        else f"the sign-up answered {r.status_code}; {stored} rows stored",
    )

    # Double click: two sign-ups with one email at the same time.
    lock = await block_user_writes(probe, backend)
    tasks = [sign_up("carol@example.com", "Carol")]
    await queued(probe, backend, 1, tasks)
    tasks.append(sign_up("carol@example.com", "Carol"))
    await queued(probe, backend, 2, tasks)
    await release(lock, backend)
    answers = sorted([(await asyncio.wait_for(t, HTTP_TIMEOUT)).status_code for t in tasks])
    stored = await count_users(probe, "carol@example.com")
    report.check(
        "double_click_one_account",
        answers == [201, 409] and stored == 1,
        f"two simultaneous sign-ups with one email answered {answers} (expected [201, 409]); {stored} rows stored",
    )


class StatementCounter:
    """Counts SQL statements of every engine in this process (executemany counts once)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.lock = threading.Lock()
        event.listen(Engine, "before_cursor_execute", self.on_execute)

    def on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with self.lock:
            self.statements.append(statement)

    def mark(self) -> int:
        with self.lock:
            return len(self.statements)

    def since(self, mark: int) -> list[str]:
        with self.lock:
            return self.statements[mark:]


# --- running the solution --------------------------------------------------------------------


def load(solution: Path, target: str) -> Any:
    """``module.path:attr`` from the solution folder (imported in this process)."""
    if str(solution) not in sys.path:
        sys.path.insert(0, str(solution))
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


@asynccontextmanager
async def served(app: Any, *, startup_timeout: float = 60) -> AsyncIterator[str]:
    """The ASGI app behind a real uvicorn server (lifespan on) in a thread of this process, on a
    free loopback port; yields the base URL. The app's engine lives in that thread's event loop;
    the caller's loop keeps running while it waits (it may serve a proxy the app connects through)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_level="error", timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    try:
        if not server.started:
            raise RuntimeError("the app did not start under uvicorn (lifespan failed? see stderr)")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 60)


@contextmanager
def serve_in_process(
    solution: Path, app_path: str, env: dict[str, str], *, startup_timeout: float = 60
) -> Iterator[str]:
    """``python -m uvicorn APP`` in its own process (cwd = the solution); yields the base URL."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=solution,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        try:
            wait_for_port(port, startup_timeout, proc)
        except Exception as exc:
            log.seek(0)
            raise RuntimeError(
                f"uvicorn {app_path} did not start: {exc}: {one_line(log.read().decode(errors='replace')[-600:])}"
            ) from None
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def http_client(base_url: str) -> Any:
    """An httpx.AsyncClient for the served app. No keep-alive: uvicorn closes a connection after
    an unhandled error (500), and a request already sent on it would fail with ReadError."""
    import httpx

    return httpx.AsyncClient(
        base_url=base_url, timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0, max_connections=100)
    )


def run_python(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` (this interpreter) in ``cwd``; never raises for a non-zero exit."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


async def alembic(solution: Path, database_url: str, *args: str) -> tuple[int, str]:
    """``alembic ARGS`` as a user runs it on deploy (the command line's own entry point, so
    ``config.cmd_opts`` is set), in a worker thread of this process to save an interpreter start
    per call. Returns (exit code, output)."""

    def call() -> tuple[int, str]:
        from alembic.config import CommandLine, Config

        out = io.StringIO()
        os.environ["DATABASE_URL"] = database_url
        try:
            with redirect_stdout(out), redirect_stderr(out):
                # What CommandLine.main does, with the command's own output captured too.
                cli = CommandLine(prog="alembic")
                options = cli.parser.parse_args(["-c", str(solution / "alembic.ini"), *args])
                files: dict[str, Any] = {"file_": options.config}
                if hasattr(cli, "_inis_from_config"):  # Alembic >= 1.16 also reads pyproject.toml
                    toml, ini = cli._inis_from_config(options)
                    files = {"file_": ini, "toml_file": toml}
                cli.run_cmd(Config(**files, ini_section=options.name, cmd_opts=options, stdout=out), options)
        except SystemExit as exc:  # alembic reports a CommandError with sys.exit(-1)
            return (exc.code if isinstance(exc.code, int) and exc.code else 1), out.getvalue()
        except Exception as exc:
            return 1, out.getvalue() + describe(exc)
        return 0, out.getvalue()

    return await asyncio.to_thread(call)


def tail(proc: subprocess.CompletedProcess[str] | str, limit: int = 400) -> str:
    text_ = proc if isinstance(proc, str) else proc.stdout + proc.stderr
    return one_line(text_[-limit:], limit)
