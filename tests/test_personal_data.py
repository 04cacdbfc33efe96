"""Personal data at rest: phones are encrypted in the database, keys rotate, admins' reads are logged."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import crypto
from app.models import PiiAccess
from app.schemas.common import mask_phone
from app.services.privacy import encrypted_columns, rotate_keys
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]


async def raw_phone(sessionmaker: Sessions, order_id: int) -> str:
    async with sessionmaker() as session:
        value = await session.scalar(text("SELECT contact_phone FROM orders WHERE id = :id"), {"id": order_id})
    assert isinstance(value, str)
    return value


@pytest.fixture
def restore_keys(app: FastAPI) -> Iterator[None]:
    yield
    crypto.configure(app.state.settings.data_key_list)


async def test_phones_are_encrypted_in_the_database(world: World, sessionmaker: Sessions) -> None:
    order = await world.place("r1", contact_phone="13912345678")
    stored = await raw_phone(sessionmaker, order["id"])
    assert stored.startswith("enc2:") and "13912345678" not in stored
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()["contact_phone"] == (
        "13912345678"
    )
    async with sessionmaker() as session:
        volunteer_phones = (await session.execute(text("SELECT phone FROM volunteers"))).scalars().all()
    assert all(p.startswith("enc2:") for p in volunteer_phones)


async def test_key_rotation_keeps_data_readable(
    world: World, sessionmaker: Sessions, restore_keys: None, app: FastAPI
) -> None:
    order = await world.place("r1", contact_phone="13912345678")
    old_key = app.state.settings.data_key_list[0]
    new_key = Fernet.generate_key().decode()
    crypto.configure([new_key, old_key])  # new first: encrypts; old still decrypts
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()["contact_phone"] == (
        "13912345678"
    )
    async with sessionmaker() as session:
        assert await rotate_keys(session) >= 1
    crypto.configure([new_key])  # the old key is retired
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()["contact_phone"] == (
        "13912345678"
    )
    stored = await raw_phone(sessionmaker, order["id"])
    assert stored.startswith("enc2:") and "13912345678" not in stored
    crypto.configure([old_key])  # rewritten under the new key: the old one alone cannot read it
    with pytest.raises(RuntimeError, match="SIDAN_DATA_KEYS"):
        crypto.decrypt(stored)


async def test_fernet_values_written_before_aes_gcm_still_read_and_rotate(
    world: World, sessionmaker: Sessions, app: FastAPI
) -> None:
    """Phones stored as ``enc:`` + a Fernet token (the form before ``enc2:``) read back, and
    ``rotate-keys`` rewrites them in the current form."""
    order = await world.place("r1")
    key = app.state.settings.data_key_list[0]
    legacy = "enc:" + Fernet(key).encrypt(b"13700002222").decode()
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET contact_phone = :p WHERE id = :id"), {"p": legacy, "id": order["id"]}
        )
    response = await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))
    assert response.json()["contact_phone"] == "13700002222"
    async with sessionmaker() as session:
        await rotate_keys(session)
    stored = await raw_phone(sessionmaker, order["id"])
    assert stored.startswith("enc2:") and crypto.decrypt(stored) == "13700002222"


def test_tampered_or_unknown_ciphertexts_are_refused(restore_keys: None) -> None:
    sealed = crypto.encrypt("13912345678")
    assert sealed != crypto.encrypt("13912345678")  # a fresh nonce each time
    assert crypto.decrypt(sealed) == "13912345678"
    blob = bytearray(base64.urlsafe_b64decode(sealed.removeprefix("enc2:")))
    blob[-1] ^= 1  # one bit of the tag
    for bad in ("enc2:" + base64.urlsafe_b64encode(bytes(blob)).decode(), "enc2:not base64!", "enc2:"):
        with pytest.raises(RuntimeError, match="SIDAN_DATA_KEYS"):
            crypto.decrypt(bad)
    crypto.configure([Fernet.generate_key().decode()])  # a key id nobody wrote with
    with pytest.raises(RuntimeError, match="SIDAN_DATA_KEYS"):
        crypto.decrypt(sealed)


async def test_plaintext_rows_from_before_encryption_still_read(world: World, sessionmaker: Sessions) -> None:
    order = await world.place("r1")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE orders SET contact_phone = '13700001111' WHERE id = :id"), {"id": order["id"]}
        )
    response = await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))
    assert response.json()["contact_phone"] == "13700001111"


async def access_log(sessionmaker: Sessions) -> list[tuple[int, int, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(PiiAccess.user_id, PiiAccess.order_id, PiiAccess.route).order_by(PiiAccess.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_admin_unmasked_reads_are_logged_and_others_are_not(world: World, sessionmaker: Sessions) -> None:
    order = await world.place("r1")
    oid = order["id"]
    await world.client.get(f"/orders/{oid}", headers=world.h("r1"))  # the resident's own: not logged
    assert await access_log(sessionmaker) == []
    await world.client.get(f"/orders/{oid}", headers=world.h("zhan11_admin"))
    await world.client.get("/admin/orders", headers=world.h("suo1_admin"))
    # An action's answer shows staff the phone masked: nothing seen, nothing to log (both paths).
    approved = await world.ok("zhan11_admin", oid, "approve")
    assert approved["contact_phone"] == mask_phone(order["contact_phone"]) != order["contact_phone"]
    replayed = await world.client.post(
        f"/orders/{oid}/dispatch",
        json={"volunteer_id": world.volunteers["v11a"]},
        headers=world.h("zhan11_admin") | {"Idempotency-Key": "dispatch-once"},
    )
    assert replayed.json()["contact_phone"] == approved["contact_phone"]
    await world.client.get(f"/orders/{oid}", headers=world.h("zhan12_admin"))  # out of scope: 404, nothing seen
    assert await access_log(sessionmaker) == [
        (world.users["zhan11_admin"], oid, "GET /orders/{id}"),
        (world.users["suo1_admin"], oid, "GET /admin/orders"),
    ]


async def test_admin_reads_of_volunteer_phones_are_logged(world: World, sessionmaker: Sessions) -> None:
    v11a = world.volunteers["v11a"]
    await world.client.get("/volunteer/me", headers=world.h("v11a"))  # their own: not logged
    listed = await world.client.get("/admin/volunteers?limit=100", headers=world.h("zhan11_admin"))
    shown = await world.client.get(f"/admin/volunteers/{v11a}", headers=world.h("suo1_admin"))
    patched = await world.client.patch(
        f"/admin/volunteers/{v11a}", json={"skills": ["讲解"]}, headers=world.h("zhan11_admin")
    )
    hidden = await world.client.get(f"/admin/volunteers/{v11a}", headers=world.h("zhan21_admin"))  # 404
    assert [r.status_code for r in (listed, shown, patched, hidden)] == [200, 200, 200, 404]
    assert shown.json()["phone"] == patched.json()["phone"]  # unmasked for the admins in scope
    listed_ids = sorted(v["id"] for v in listed.json()["items"])
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(PiiAccess.user_id, PiiAccess.volunteer_id, PiiAccess.order_id, PiiAccess.field, PiiAccess.route)
                .where(PiiAccess.volunteer_id.is_not(None))
                .order_by(PiiAccess.id)
            )
        ).all()
    zhan11, suo1 = world.users["zhan11_admin"], world.users["suo1_admin"]
    assert sorted(r.volunteer_id for r in rows if r.route == "GET /admin/volunteers") == listed_ids
    assert {r.user_id for r in rows if r.route == "GET /admin/volunteers"} == {zhan11}
    assert [tuple(r) for r in rows if r.route != "GET /admin/volunteers"] == [
        (suo1, v11a, None, "phone", "GET /admin/volunteers/{id}"),
        (zhan11, v11a, None, "phone", "PATCH /admin/volunteers/{id}"),
    ]


async def test_timeline_and_outbox_never_carry_a_full_phone(world: World, sessionmaker: Sessions) -> None:
    order = await world.place("r1", contact_phone="13912345678")
    async with sessionmaker() as session:
        events = (await session.execute(text("SELECT payload::text FROM order_events"))).scalars().all()
        outbox = (await session.execute(text("SELECT payload::text FROM outbox_messages"))).scalars().all()
        count = await session.scalar(select(func.count()).select_from(PiiAccess))
    assert not any("13912345678" in row for row in [*events, *outbox])
    assert count == 0  # the orderer placing it is no access to log
    assert order["contact_phone"] == "13912345678"


def test_rotate_keys_covers_every_encrypted_column() -> None:
    """Phones are kept in five tables; ``rotate-keys`` finds each by its column type, so a table added
    later (standing orders, SMS deliveries) is rotated without being listed anywhere."""
    found = {(column.table.name, column.name) for column in encrypted_columns()}
    assert found >= {
        ("orders", "contact_phone"),
        ("users", "phone"),
        ("volunteers", "phone"),
        ("standing_orders", "contact_phone"),
        ("sms_deliveries", "phone"),
    }
