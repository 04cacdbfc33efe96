"""Phone lookup hashes (盲索引): one number however written, their own key, and the migration that
hashes the phones already stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import make_url

from app import crypto
from app.config import Settings
from app.migrate import alembic_config


def test_one_number_however_written() -> None:
    same = {crypto.lookup_hash(p) for p in ("13812345678", "+86 138-1234-5678", "86 13812345678", "138 1234 5678")}
    assert len(same) == 1
    assert crypto.lookup_hash("13812345679") not in same
    assert crypto.lookup_hash("0571-88886666") == crypto.lookup_hash("057188886666")
    assert crypto.lookup_hash(None) is None


def test_the_lookup_key_is_its_own() -> None:
    data_key, lookup_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    try:
        crypto.configure([data_key])
        derived = crypto.lookup_hash("13812345678")
        crypto.configure([Fernet.generate_key().decode(), data_key])  # a new data key first: same hash
        assert crypto.lookup_hash("13812345678") == derived
        crypto.configure([data_key], lookup_key)
        assert crypto.lookup_hash("13812345678") != derived
    finally:
        crypto.configure([crypto.DEV_DATA_KEY])
    with pytest.raises(ValidationError, match="SIDAN_LOOKUP_KEY"):
        Settings(lookup_key="not-a-key")


@pytest.fixture
async def scratch_url(server_url: str) -> AsyncIterator[str]:
    name = f"sidan_mig_{uuid.uuid4().hex[:10]}"
    dsn = make_url(server_url).set(drivername="postgresql")
    admin = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_migration_hashes_stored_phones_and_keeps_the_oldest_of_duplicates(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    hashing = ScriptDirectory.from_config(config).get_revision("c3a9e2d1f4b6")
    assert hashing is not None and isinstance(hashing.down_revision, str)
    before = hashing.down_revision  # the schema this migration found
    await asyncio.to_thread(command.upgrade, config, before)
    connection = await asyncpg.connect(make_url(scratch_url).set(drivername="postgresql").render_as_string(False))
    try:
        enc = crypto.encrypt
        await connection.execute(
            "INSERT INTO org_units (id, level, name, code, path) VALUES (1, 'center', 'c', 'c', '1.')"
        )
        for user_id, role, phone in [
            (1, "volunteer", "13811110000"),
            (2, "volunteer", "138-1111-0000"),  # the same number as 1
            (3, "resident", "13922220000"),
            (4, "resident", "13922220000"),  # a resident sharing it
            (5, "admin", "13922220000"),
        ]:
            await connection.execute(
                "INSERT INTO users (id, role, unit_id, phone) VALUES ($1, $2, 1, $3)", user_id, role, enc(phone)
            )
        for volunteer_id, user_id, phone in [(1, 1, "13811110000"), (2, 2, "138-1111-0000")]:
            await connection.execute(
                "INSERT INTO volunteers (id, user_id, real_name, phone, home_unit_id) VALUES ($1, $2, 'v', $3, 1)",
                volunteer_id,
                user_id,
                enc(phone),
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        volunteers = dict(await connection.fetch("SELECT id, phone_hash FROM volunteers ORDER BY id"))
        users = dict(await connection.fetch("SELECT id, phone_hash FROM users ORDER BY id"))
        assert volunteers == {1: crypto.lookup_hash("13811110000"), 2: None}
        resident = crypto.lookup_hash("13922220000")
        assert (users[3], users[4], users[5]) == (resident, None, resident)
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute("UPDATE volunteers SET phone_hash = $1 WHERE id = 2", volunteers[1])
        await asyncio.to_thread(command.downgrade, config, before)
        await asyncio.to_thread(command.upgrade, config, "head")
    finally:
        await connection.close()
