"""Private PostgreSQL, MariaDB and PgBouncer processes for the reliability tests.

``PrivatePostgres`` runs ``initdb`` + ``pg_ctl`` in a temporary directory on a free loopback port
(as the ``postgres`` OS user when the tests run as root: initdb refuses root), so a test may stop
and restart it without touching the shared server. ``PrivateMariaDB`` does the same with
``mariadb-install-db`` + ``mariadbd``. ``PrivateStandby`` is a streaming-replication hot standby
of a ``PrivatePostgres`` (``pg_basebackup -R``), which a test may stop, restart or promote.
``PgBouncer`` runs ``pgbouncer`` in front of a private PostgreSQL from its own config file. All
remove their directory when destroyed; every wait is bounded.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pg_bin() -> Path | None:
    """Directory holding initdb/pg_ctl/psql: $PG_BIN, the newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates = [os.environ.get("PG_BIN", "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and all((Path(c) / tool).exists() for tool in ("initdb", "pg_ctl", "psql")):
            return Path(c)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def pgbouncer_bin() -> str | None:
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


def mariadb_bins() -> tuple[str, str] | None:
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    packaged = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")
    server = shutil.which("mariadbd") or next((p for p in packaged if Path(p).exists()), None)
    return (install, server) if install and server else None


def missing_mariadb_reason() -> str | None:
    if mariadb_bins() is None:
        return "no MariaDB server binaries (mariadb-install-db, mariadbd): install mariadb-server"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("mysql")
        except KeyError:
            return "running as root without a 'mysql' OS user to run mariadbd as"
    return None


def missing_tools_reason(*, need_pgbouncer: bool = False) -> str | None:
    """None when the private-server tests can run here, else why not (and how to fix it)."""
    if pg_bin() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl, psql): install postgresql or set PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' OS user to run initdb as"
    if need_pgbouncer and pgbouncer_bin() is None:
        return "pgbouncer not installed (Debian/Ubuntu: apt-get install pgbouncer)"
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster with trust auth on 127.0.0.1 and a database ``app``."""

    def __init__(self, *, max_connections: int = 40, settings: dict[str, str] | None = None) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError(missing_tools_reason())
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="asp-rel-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": str(max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            **(settings or {}),
        }

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full = [*(["runuser", "-u", "postgres", "--"] if self.as_postgres else []), *argv]
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=True)

    def url(
        self, driver: str = "asyncpg", *, port: int | None = None, database: str = "app", user: str = "postgres"
    ) -> str:
        return f"postgresql+{driver}://{user}@127.0.0.1:{port or self.port}/{database}"

    def init(self) -> None:
        self.run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("".join(f"{k} = {v}\n" for k, v in self.conf.items()))
        self.start()
        self.psql("CREATE DATABASE app")

    def start(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: running transactions are rolled back and their sessions terminated."""
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self.run(
            str(self.bin / "psql"),
            "-h",
            str(self.dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        )
        return out.stdout.strip()

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def wait_for(self, sql: str, expected: str, timeout: float = 60.0, database: str = "postgres") -> None:
        """Poll ``sql`` until it prints ``expected`` (bounded)."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            try:
                seen = self.psql(sql, database)
            except subprocess.CalledProcessError as exc:
                seen = exc.stderr.strip()
            if seen == expected:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{sql!r} printed {seen!r}, not {expected!r}, for {timeout}s")


class PrivateStandby(PrivatePostgres):
    """A hot standby of ``primary`` made with ``pg_basebackup -R`` (streaming replication, its own
    directory and port). ``promote()`` turns it into a primary of its own (a detached copy)."""

    def __init__(self, primary: PrivatePostgres) -> None:
        own = ("port", "unix_socket_directories")
        super().__init__(
            max_connections=int(primary.conf["max_connections"]),
            settings={k: v for k, v in primary.conf.items() if k not in own},
        )
        self.primary = primary

    def init(self) -> None:
        # Copies the primary's data directory (its database "app" included) and writes
        # primary_conninfo + standby.signal; initdb's pg_hba.conf trusts replication on 127.0.0.1.
        self.run(
            str(self.bin / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            timeout=120,
        )
        with open(self.data / "postgresql.conf", "a") as fh:  # later lines win: own port and socket
            fh.write("".join(f"{k} = {v}\n" for k, v in self.conf.items()))
        self.start()
        self.wait_streaming()

    def wait_streaming(self, timeout: float = 60.0) -> None:
        """Until the primary reports this standby as streaming."""
        self.primary.wait_for("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "1", timeout)

    def promote(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote")


class PrivateMariaDB:
    """A throw-away MariaDB server on 127.0.0.1 (root without password) with a database ``app``."""

    def __init__(self) -> None:
        bins = mariadb_bins()
        if bins is None:
            raise RuntimeError(missing_mariadb_reason())
        self.install_bin, self.server_bin = bins
        self.dir = Path(tempfile.mkdtemp(prefix="asp-rel-my-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "mysql", "mysql")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, driver: str = "aiomysql", *, database: str = "app") -> str:
        return f"mysql+{driver}://root@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        user = ["--user=mysql"] if self.as_root else []
        subprocess.run(
            [
                self.install_bin,
                "--no-defaults",
                f"--datadir={self.data}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.start()
        self.sql("CREATE DATABASE app")

    def start(self) -> None:
        user = ["--user=mysql"] if self.as_root else []
        # Own tmpdir: at startup mariadbd deletes every '#sql*' file in its tmpdir, which with the
        # default /tmp includes the temporary tables the shared server is using at that moment
        # ("Error on delete of '/tmp/#sql-temptable-...MAI'" in a concurrent test).
        tmpdir = self.dir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        if self.as_root:
            shutil.chown(tmpdir, "mysql", "mysql")
        self.proc = subprocess.Popen(
            [
                self.server_bin,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                f"--tmpdir={tmpdir}",
                "--bind-address=127.0.0.1",
                f"--socket={self.dir / 'sock'}",
                f"--pid-file={self.dir / 'pid'}",
                f"--log-error={self.dir / 'err.log'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                *user,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, 60, self.proc)
        except Exception:
            log = (self.dir / "err.log").read_text(errors="replace") if (self.dir / "err.log").exists() else ""
            self.stop()
            raise RuntimeError(f"mariadbd did not start: {log[-2000:]}") from None

    def sql(self, statement: str) -> None:
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        subprocess.run(
            [client, "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-e", statement],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def stop(self) -> None:
        """SIGTERM: a normal shutdown (open sessions are killed), waited for."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncer:
    """``pgbouncer`` on a free loopback port in front of ``server`` (trust auth, user postgres)."""

    def __init__(
        self,
        server: PrivatePostgres,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 4,
        extra: dict[str, str] | None = None,
        users: tuple[str, ...] = ("postgres",),
    ) -> None:
        binary = pgbouncer_bin()
        if binary is None:
            raise RuntimeError(missing_tools_reason(need_pgbouncer=True))
        self.binary = binary
        self.server = server
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="asp-rel-pgb-"))
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "pool_mode": pool_mode,
            "default_pool_size": str(default_pool_size),
            "max_client_conn": "200",
            "logfile": str(self.dir / "pgbouncer.log"),
            "pidfile": str(self.dir / "pgbouncer.pid"),
            "admin_users": "postgres",
            **(extra or {}),
        }
        (self.dir / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))  # trust: names only
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres", "postgres")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, driver: str = "asyncpg", database: str = "app", user: str = "postgres") -> str:
        return self.server.url(driver, port=self.port, database=database, user=user)

    def start(self) -> None:
        user = ["-u", "postgres"] if os.geteuid() == 0 else []  # pgbouncer refuses to run as root
        # stderr to a file, never a pipe nobody reads: pgbouncer logs every login there too, and
        # once a pipe's 64 KiB buffer is full it blocks in write() and serves no client any more
        # (seen with NullPool, which logs in once per checkout: every client then waits forever).
        with open(self.dir / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                [self.binary, *user, str(self.dir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            wait_for_port(self.port, 15, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start: {self.log()[-2000:]}") from None

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
