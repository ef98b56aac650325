"""Make sure what the tests need is here: start Redis when nothing answers on its URL, and
install Debian's chromium (for the playground's browser test) when it is missing.

PostgreSQL is not started here: the tests that need it skip, saying why, where none answers.
The browser test never downloads a browser (no `playwright install`): it drives this chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHROMIUM = Path("/usr/bin/chromium")


def redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_redis() -> None:
    if shutil.which("redis-server") is None:
        print("ensure_services: installing redis-server from Debian's packages", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
    port = str(urlparse(REDIS_URL).port or 6379)
    print(f"ensure_services: starting redis-server on port {port}", flush=True)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )


def ensure_chromium() -> None:
    """Install Debian's chromium if it is missing; without it the browser test skips."""
    if CHROMIUM.exists():
        return
    print("ensure_services: installing chromium from Debian's packages", flush=True)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        print(
            f"ensure_services: could not install chromium ({error}); the browser test will skip",
            file=sys.stderr,
        )


def main() -> int:
    ensure_chromium()
    if redis_answers():
        return 0
    start_redis()
    for _ in range(50):
        if redis_answers():
            return 0
        time.sleep(0.1)
    print(f"ensure_services: Redis does not answer at {REDIS_URL}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
