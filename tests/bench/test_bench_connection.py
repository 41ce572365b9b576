"""How far past --timeout test-connection answers when the server never replies.

A silent server (accepts TCP, never answers) is the case the watchdog exists for. The tests only
check that the answer comes far below the hang it cuts off; the real overshoot is printed here,
per driver, as the median of 5 runs. Reported, never asserted.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-connection.sh"
TIMEOUT = 2.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "mysql+aiomysql"])
def test_overshoot_past_the_deadline(scheme: str, silent_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHON"] = sys.executable
    overshoot = []
    for _ in range(5):
        done = subprocess.run(
            ["bash", str(SCRIPT), f"{scheme}://u:p@127.0.0.1:{silent_port}/db", "--json", "--timeout", str(TIMEOUT)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        overshoot.append(json.loads(done.stdout)["elapsed_ms"] - TIMEOUT * 1000)
    print(
        f"\ntest-connection {scheme} silent server, --timeout {TIMEOUT}: answered "
        f"{statistics.median(overshoot):+.0f} ms from the deadline (median of 5; min {min(overshoot):+.0f}, "
        f"max {max(overshoot):+.0f})"
    )
