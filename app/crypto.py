"""Personal data at rest (个人信息加密): phone numbers are stored encrypted with Fernet (AES-128-CBC +
HMAC-SHA256), keys from settings.

``SIDAN_DATA_KEYS`` is a comma-separated list of Fernet keys: the first encrypts, all decrypt, so a
key is rotated by putting a new one first and re-encrypting at leisure (``sidan rotate-keys``). Values
written before encryption was switched on (no ``enc:`` prefix) read back as they are.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

PREFIX = "enc:"


def derive_key(secret: str) -> str:
    """A Fernet key derived from a passphrase (development default only)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).decode()


DEV_DATA_KEY = derive_key("sidan-dev-data-key")

_cipher: MultiFernet = MultiFernet([Fernet(DEV_DATA_KEY)])


def configure(keys: list[str]) -> None:
    """Install the keys (first encrypts). Called once at start-up from settings."""
    global _cipher
    _cipher = MultiFernet([Fernet(key.strip()) for key in keys if key.strip()])


def encrypt(value: str) -> str:
    return PREFIX + _cipher.encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        return value  # written before encryption; readable, re-encrypted by rotate-keys
    try:
        return _cipher.decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise RuntimeError("cannot decrypt personal data: is the right key in SIDAN_DATA_KEYS?") from exc


def rotate(value: str) -> str:
    """Re-encrypt under the first key (plaintext legacy values get encrypted)."""
    if not value.startswith(PREFIX):
        return encrypt(value)
    return PREFIX + _cipher.rotate(value[len(PREFIX) :].encode()).decode()


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted; Python code only ever sees the plaintext."""

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(str(value))
