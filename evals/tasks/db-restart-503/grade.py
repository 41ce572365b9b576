"""Grader: while the database restarts the API answers 503 with Retry-After, and recovers by itself.

``python grade.py SOLUTION_DIR [--backend postgresql|mysql]``. Serves ``shop.main:app`` with uvicorn
on a scratch database reached through a TCP proxy run by the grader. "Restart" = the proxy drops
every open connection and refuses new ones (what clients see while a server restarts), then
accepts again on the same port. The shared server itself is never stopped.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

CHECKS = ["works_before_restart", "down_reads_503", "down_writes_503", "down_retry_after", "down_health_503",
          "recovers_without_restart", "not_found_still_404"]


class Proxy:
    """A TCP forwarder on a fixed loopback port that can be taken down and brought back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = gradelib.free_port()
        self.server: asyncio.base_events.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self.link, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    async def link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.links.update((client_writer, server_writer))

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.transport.abort()

        try:
            await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))
        finally:
            self.links.difference_update((client_writer, server_writer))


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        real = make_url(url)
        proxy = Proxy(real.host or "127.0.0.1", real.port or (5432 if backend == "postgresql" else 3306))
        await proxy.up()
        try:
            os.environ["DATABASE_URL"] = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False)
            app = gradelib.load(solution, "shop.main:app")
            async with gradelib.served(app) as base:
                async with gradelib.http_client(base) as client:
                    await scenario(client, proxy, report)
        finally:
            await proxy.down()


async def scenario(client: httpx.AsyncClient, proxy: Proxy, report: gradelib.Report) -> None:
    created = [await client.post("/items", json={"name": f"item {i}", "price_cents": 100 + i}) for i in range(3)]
    listed = await client.get("/items")
    ok = [r.status_code for r in created] == [201] * 3 and listed.status_code == 200 and len(listed.json()) == 3
    report.check("works_before_restart", ok, f"before the restart: POST /items answered "
                 f"{[r.status_code for r in created]}, GET /items {listed.status_code}")
    first_id = created[0].json()["id"] if created[0].status_code == 201 else 1

    await proxy.down()
    reads = [await client.get("/items"), await client.get(f"/items/{first_id}"), await client.get("/items")]
    writes = [await client.post("/items", json={"name": "while down", "price_cents": 1}) for _ in range(2)]
    health = await client.get("/health")
    await proxy.up()

    def summary(responses: list[httpx.Response]) -> str:
        return ", ".join(f"{r.request.method} {r.request.url.path} -> {r.status_code}" for r in responses)

    report.check("down_reads_503", all(r.status_code == 503 for r in reads),
                 f"while the database was unreachable: {summary(reads)} (expected 503)")
    report.check("down_writes_503", all(r.status_code == 503 for r in writes),
                 f"while the database was unreachable: {summary(writes)} (expected 503)")
    unavailable = [r for r in reads + writes + [health] if r.status_code == 503]
    report.check("down_retry_after", bool(unavailable) and all(r.headers.get("retry-after") for r in unavailable),
                 "503 answers without a Retry-After header" if unavailable else "no 503 answer to look at")
    report.check("down_health_503", health.status_code == 503,
                 f"GET /health answered {health.status_code} while the database was unreachable (expected 503)")

    after = [await client.get("/items"), await client.post("/items", json={"name": "after", "price_cents": 2}),
             await client.get("/health")]
    report.check("recovers_without_restart", [r.status_code for r in after] == [200, 201, 200],
                 f"right after the database came back: {summary(after)} (expected 200, 201, 200)")
    missing = await client.get("/items/987654")
    report.check("not_found_still_404", missing.status_code == 404,
                 f"GET of a missing item answered {missing.status_code} (expected 404)")


TASK = gradelib.Task(checks=CHECKS, backends=("postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))
