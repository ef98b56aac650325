"""Shared fixtures: real Redis, SQLite, PostgreSQL and Chroma server, the embedding model,
unique team ids."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.main import Lore
from emulator import EmulatorConfig, SlackEmulator
from memory.archive import Archive
from memory.db import create_tables, make_engine
from memory.embeddings import INT8_NAME, OnnxEmbedder, quantized_model
from tests.chroma_server import CHROMA_BIN, running_chroma
from tests.fake_anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(
    os.environ.get("LORE_TEST_MODEL_DIR", ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2")
)
MODEL_CACHE_DIR = ROOT / "test-output" / "models"
# Every Lore the tests start shares one int8 copy of the model (made once, keyed by the source's
# sha256) rather than quantizing it again in each data dir.
os.environ.setdefault("LORE_MODEL_CACHE_DIR", str(MODEL_CACHE_DIR))
REDIS_URL = os.environ.get("LORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "LORE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    """The real embedding model, loaded once for the whole run."""
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    return OnnxEmbedder(MODEL_DIR)


@pytest.fixture(scope="session")
def lore_embedder() -> OnnxEmbedder:
    """The embedder a Lore started at its defaults uses (int8, from the shared cache): for
    tests that read the vectors such a Lore wrote."""
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"model not present at {MODEL_DIR}")
    return OnnxEmbedder(quantized_model(MODEL_DIR, MODEL_CACHE_DIR), name=INT8_NAME)


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Chroma server (`chroma run`) for the whole run; its URL. Tests sharing it use their
    own team ids (`new_team`), since each workspace has its own collection."""
    if not CHROMA_BIN.is_file():
        pytest.skip(f"the chroma CLI is not installed at {CHROMA_BIN}")
    with running_chroma(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def new_team() -> str:
    """A workspace id no other test uses, so shared Redis and PostgreSQL need no cleaning."""
    return "T" + uuid.uuid4().hex[:10].upper()


async def postgres_engine_or_skip() -> AsyncEngine:
    engine = make_engine(POSTGRES_URL)
    try:
        await create_tables(engine)
    except (OSError, Exception) as error:  # asyncpg raises OSError or its own errors
        await engine.dispose()
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_URL}: {error}")
    return engine


@contextlib.asynccontextmanager
async def postgres_schema(prefix: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh PostgreSQL schema of its own (dropped afterwards), so a test may
    create tables as an older version did; skips where PostgreSQL does not answer."""
    schema = prefix + uuid.uuid4().hex[:12]
    engine = create_async_engine(
        POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}}
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA {schema}"))
    except (OSError, Exception) as error:  # asyncpg raises OSError or its own errors
        await engine.dispose()
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_URL}: {error}")
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
    await create_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    engine = await postgres_engine_or_skip()
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_archive(
    tmp_path: Path, embedder: OnnxEmbedder, sqlite_engine: AsyncEngine
) -> AsyncIterator[Archive]:
    """An archive on embedded Chroma and SQLite, with the real embedding model."""
    opened = await Archive.open_embedded(tmp_path / "chroma", embedder, sqlite_engine)
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'lore.db'}")
        await create_tables(engine)
    else:
        engine = await postgres_engine_or_skip()
    yield engine
    await engine.dispose()


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[SlackEmulator]:
    emu = SlackEmulator(EmulatorConfig(events_url=None, retry_delays=(0.3, 0.3, 0.3)))
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def team_emulator() -> AsyncIterator[SlackEmulator]:
    """An emulator of its own workspace (a fresh team id), for tests on shared Redis."""
    emu = SlackEmulator(EmulatorConfig(events_url=None, team_id=new_team()))
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def lore(
    emulator: SlackEmulator, fake_llm: FakeAnthropic, tmp_path: Path
) -> AsyncIterator[Lore]:
    from tests.harness import lore_settings, start_lore_on

    running = await start_lore_on(emulator, lore_settings(tmp_path, fake_llm))
    yield running
    await running.stop()


@pytest.fixture
async def lore_retrieval_only(emulator: SlackEmulator, tmp_path: Path) -> AsyncIterator[Lore]:
    from tests.harness import lore_settings, start_lore_on

    running = await start_lore_on(emulator, lore_settings(tmp_path, None))
    yield running
    await running.stop()
