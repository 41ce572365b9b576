"""Grader: the inventory API works behind PgBouncer in transaction mode (see prompt.md).

``python grade.py SOLUTION_DIR [--backend postgresql]``. Creates a scratch database on the
``TEST_POSTGRES_URL`` server and the solution's tables in it (directly), starts its own
``pgbouncer`` (transaction pooling, 2 server connections) on a free loopback port in front of that
database, then runs ``uvicorn inventory.main:app`` with ``DATABASE_URL`` pointing at PgBouncer:
once under concurrent load, then again in a second process (new processes reuse PgBouncer's
server connections, where the first one left its prepared statements).

Needs ``pgbouncer`` (Debian/Ubuntu: ``apt-get install pgbouncer``); as root it runs as the
``postgres`` OS user. Without it the grader skips with exit code 4.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

CHECKS = ["first_process_serves", "first_process_under_load", "second_process_under_load", "quantities_exact"]
WORKERS = 8


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if Path(p).exists()), None)


def missing_pgbouncer(backend: str) -> str | None:
    if pgbouncer_binary() is None:
        return "pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer); this task needs it"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' OS user to run pgbouncer as (it refuses root)"
    return None


class PgBouncer:
    """pgbouncer in transaction mode on a free loopback port, for one database of the server."""

    def __init__(self, server: URL, pool_size: int = 2) -> None:
        self.port = gradelib.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="evalgrade-pgb-"))
        user = server.username or "postgres"
        target = f"host={server.host or '127.0.0.1'} port={server.port or 5432} dbname={server.database} user={user}"
        if server.password:
            target += f" password={server.password}"
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n{server.database} = {target}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user = []
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            user = ["-u", "postgres"]
            for path in [self.dir, *self.dir.iterdir()]:
                shutil.chown(path, "postgres", "postgres")
        self.proc = subprocess.Popen([pgbouncer_binary() or "pgbouncer", *user, str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gradelib.wait_for_port(self.port, 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def load(base: str) -> tuple[list[str], dict[int, int]]:
    """WORKERS clients at once: create a product, move stock twice, read it back, list.
    Returns (problems, expected quantity per product id)."""
    problems: list[str] = []
    expected: dict[int, int] = {}

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        r = await client.post("/products", json={"name": f"product {n}"})
        if r.status_code != 201:
            problems.append(f"POST /products -> {r.status_code} {r.text[:160]}")
            return
        pid = r.json()["id"]
        expected[pid] = 0
        for delta in (5, -2):
            r = await client.post(f"/products/{pid}/movements", json={"delta": delta})
            if r.status_code != 201:
                problems.append(f"POST movements -> {r.status_code} {r.text[:160]}")
                return
            expected[pid] += delta
        for path in (f"/products/{pid}", "/products"):
            r = await client.get(path)
            if r.status_code != 200:
                problems.append(f"GET {path} -> {r.status_code} {r.text[:160]}")
                return

    async with gradelib.http_client(base) as client:
        await asyncio.gather(*(worker(n, client) for n in range(WORKERS)))
    return problems, expected


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    models = gradelib.load(solution, "inventory.models")
    async with gradelib.scratch_database(backend) as url:
        direct = create_async_engine(url)
        bouncer = PgBouncer(make_url(url))
        try:
            async with direct.begin() as conn:
                await conn.run_sync(models.Base.metadata.create_all)
            bouncer.start()
            env = gradelib.child_env(DATABASE_URL=make_url(url).set(host="127.0.0.1", port=bouncer.port)
                                     .render_as_string(hide_password=False))
            expected: dict[int, int] = {}
            for name in ("first_process_under_load", "second_process_under_load"):
                with gradelib.serve_in_process(solution, "inventory.main:app", env) as base:
                    if name == "first_process_under_load":
                        async with gradelib.http_client(base) as client:
                            r = await client.get("/products")
                        report.check("first_process_serves", r.status_code == 200,
                                     f"GET /products through PgBouncer answered {r.status_code}: {r.text[:200]}")
                    problems, created = await load(base)
                    expected.update(created)
                    report.check(name, not problems, f"{len(problems)} failed requests of {WORKERS} clients, "
                                 f"e.g. {problems[:1]}")
            async with direct.connect() as conn:
                rows = dict((await conn.execute(text("SELECT id, quantity FROM products"))).all())
            wrong = {pid: (rows.get(pid), qty) for pid, qty in expected.items() if rows.get(pid) != qty}
            report.check("quantities_exact", bool(expected) and not wrong,
                         f"stored quantity differs from the movements for {len(wrong)} products (stored, expected): "
                         f"{list(wrong.items())[:3]}" if expected else "no product was created")
        finally:
            bouncer.stop()
            await direct.dispose()


TASK = gradelib.Task(checks=CHECKS, backends=("postgresql",), run=run, extra_need=missing_pgbouncer)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))
