"""Drive test set-up: databases (SQLite and PostgreSQL), blob stores (mem:// and osfs://),
and — for the end-to-end tests — a stack of its own with the drive plugin enabled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio

from anywhere.bridge.testing.fixtures import postgres_database_blocking
from anywhere.bridge.testing.stack import Stack
from anywhere.plugins.drive.schema import DRIVE_MIGRATIONS
from anywhere.plugins.drive.service import Drive
from anywhere.plugins.drive.settings import DriveSettings
from anywhere.storage import open_database, run_migrations
from anywhere.storage.stores import open_blob_store

from .people import DrivePerson


@pytest.fixture
def database_url(anywhere_database_url: str) -> str:
    """SQLite, then a fresh PostgreSQL database (the fixture Anywhere ships)."""
    return anywhere_database_url


@pytest.fixture(params=["mem", "osfs"])
def blob_url(request, tmp_path):
    return "mem://" if request.param == "mem" else f"osfs://{tmp_path / 'blobs'}"


@pytest_asyncio.fixture(loop_scope="function")
async def drive(database_url, tmp_path):
    """A drive on a fresh database (SQLite or PostgreSQL) and an osfs:// blob store,
    with a small quota so quota tests stay small."""
    db = await open_database(database_url)
    await run_migrations(db, [DRIVE_MIGRATIONS])
    blobs = open_blob_store(f"osfs://{tmp_path / 'drive-blobs'}")
    service = Drive(db, blobs, DriveSettings(quota_bytes=1_000_000))
    try:
        yield service
    finally:
        await blobs.close()
        await db.stop()


async def chunks_of(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


# ----- end to end: a Synapse and a bridge running the drive -----

E2E_QUOTA = 6 * 1024 * 1024
E2E_UPLOAD_LIMIT = 4 * 1024 * 1024


def _drive_stack(workdir, storage_url: str, database_url: str | None = None) -> Stack:
    return Stack(
        workdir,
        ["basics", "policy", "drive"],
        settings={"drive": {"storage_url": storage_url, "quota_bytes": E2E_QUOTA}},
        bridge_extra={"database": {"url": database_url}} if database_url else None,
        # A small media limit, so "larger than the homeserver accepts" is cheap to test.
        synapse_extra={"max_upload_size": E2E_UPLOAD_LIMIT},
    )


@pytest.fixture(scope="session")
def drive_stack(tmp_path_factory) -> Iterator[Stack]:
    """Synapse and a bridge with the drive on osfs:// (content survives a restart)."""
    workdir = tmp_path_factory.mktemp("drive")
    stack = _drive_stack(workdir, f"osfs://{workdir / 'drive-store'}")
    stack.drive_root = workdir / "drive-store"
    with stack:
        yield stack


@pytest.fixture(scope="session")
def mem_drive_stack(tmp_path_factory) -> Iterator[Stack]:
    """The same with the drive on mem://."""
    with _drive_stack(tmp_path_factory.mktemp("drive-mem"), "mem://") as stack:
        yield stack


@pytest.fixture(scope="session")
def pg_drive_stack(tmp_path_factory) -> Iterator[Stack]:
    """The same with the bridge's database on PostgreSQL (a database made for it)."""
    workdir = tmp_path_factory.mktemp("drive-pg")
    with postgres_database_blocking() as database_url:
        stack = _drive_stack(workdir, f"osfs://{workdir / 'drive-store'}", database_url)
        with stack:
            yield stack


@pytest.fixture(params=["osfs", "mem", "postgresql"])
def any_drive_stack(request) -> Stack:
    """Each drive stack in turn: osfs://, mem://, and the database on PostgreSQL."""
    names = {"osfs": "drive_stack", "mem": "mem_drive_stack", "postgresql": "pg_drive_stack"}
    return request.getfixturevalue(names[request.param])


@pytest_asyncio.fixture
async def person(drive_stack):
    """Factory: ``alice = await person()`` — a new person on the osfs:// drive stack."""
    made: list[DrivePerson] = []

    async def make(stack: Stack | None = None) -> DrivePerson:
        stack = stack or drive_stack
        user = DrivePerson(await stack.user(), stack)
        made.append(user)
        return user

    yield make
    for user in made:
        await user.close()
