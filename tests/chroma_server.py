"""A local Chroma server (`chroma run`) for tests, started on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMA_BIN = Path(sys.executable).with_name("chroma")
START_SECONDS = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_heartbeat(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Return once the server answers its heartbeat; raise if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"chroma server at {url} did not answer within {seconds} s")


@contextmanager
def running_chroma(path: Path) -> Iterator[str]:
    """`chroma run --path path` on 127.0.0.1 and a free port; yields its URL, then stops it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [str(CHROMA_BIN), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_heartbeat(url, proc, START_SECONDS)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
