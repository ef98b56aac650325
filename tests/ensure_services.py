"""Make sure the services the tests need answer: start Redis when nothing answers on its URL.

PostgreSQL is not started here: the tests that need it skip, saying why, where none answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis

REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


def main() -> int:
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
