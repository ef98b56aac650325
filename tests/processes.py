"""Lore and its stores as processes of their own, for fault tests: start, hold still (SIGSTOP),
kill, and find the processes a store runs in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from memory.lexical import TABLE
from tests.chroma_server import (
    CHROMA_BIN,
    START_SECONDS,
    free_port,
    running_chroma,
    wait_for_heartbeat,
)
from tests.conftest import ROOT
from tests.harness import wait_ready


@asynccontextmanager
async def serving(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m app serve` in a process group of its own (it and its Chroma worker); killed
    on the way out if the test has not stopped it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, env=env, start_new_session=True
    )
    try:
        await wait_ready(f"http://127.0.0.1:{env['PORT']}", process)
        yield process
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def chroma_worker_of(pid: int) -> int:
    """The embedded Chroma worker process that Lore `pid` started (forked by its fork server)."""
    for child in _children(pid):
        if b"forkserver" in _cmdline(child):
            for worker in _children(child):
                return worker
    raise LookupError(f"no Chroma worker under process {pid}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextmanager
def held(pid: int) -> Iterator[None]:
    """Process `pid` stopped (SIGSTOP) for the body; continued after, if still there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def lexical_rows(data_dir: Path, team: str, channel: str) -> dict[str, str]:
    """ts -> text of the team's archived records, read from the SQLite file as it is now."""
    with sqlite3.connect(f"file:{data_dir / 'lore.db'}?mode=ro", uri=True) as db:
        query = f"SELECT ts, text FROM {TABLE} WHERE team_id = ? AND channel_id = ?"
        return dict(db.execute(query, (team, channel)).fetchall())


@contextmanager
def chroma_process(path: Path) -> Iterator[tuple[str, int]]:
    """A Chroma server of this test's own (it is held still): its URL and process id."""
    with running_chroma(path) as url:
        port = url.rsplit(":", 1)[1]
        yield url, listener_pid(int(port))


def listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:`port` (from /proc, by the socket's inode)."""
    inode = ""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
            inode = fields[9]
    assert inode, f"nothing listens on {port}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if f"socket:[{inode}]" in links:
            return int(entry.name)
    raise LookupError(f"no process owns the socket listening on {port}")


class RedisServer:
    """A redis-server of a test's own on a free port, with an append-only file in `directory`,
    so it can be stopped and started again with its data (as production runs it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--appendonly", "yes", "--save", ""]
        self._process = subprocess.Popen(
            ["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection,
            ):
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not answer")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


class ChromaServer:
    """`chroma run` of a test's own on a free port and `path`, to stop and start again there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = ["run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)]
        self._process = subprocess.Popen(
            [str(CHROMA_BIN), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_heartbeat(self.url, self._process, START_SECONDS)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


class PostgresServer:
    """A PostgreSQL cluster of a test's own (initdb in a temp dir, pg_ctl on a free port), run
    as the `postgres` user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="lore-pg-"))
        self.port = free_port()
        self._data = self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_owner, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self._data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
