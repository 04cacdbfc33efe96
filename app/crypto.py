"""Personal data at rest (个人信息加密): phone numbers are stored encrypted with AES-256-GCM, keys from
settings.

``SIDAN_DATA_KEYS`` is a comma-separated list of keys (32 random bytes, URL-safe base64: what
``Fernet.generate_key()`` prints): the first encrypts, all decrypt, so a key is rotated by putting a
new one first and re-encrypting at leisure (``sidan rotate-keys``).

A stored value is ``enc2:`` + base64url(key id ‖ nonce ‖ ciphertext ‖ tag): the key id (4 bytes of a
hash of the key) picks the key, so reading one is a single AES-GCM call. Older forms still read:
``enc:`` + a Fernet token (AES-128-CBC + HMAC-SHA256, written before ``enc2:``) and plaintext from
before encryption was switched on; ``rotate-keys`` rewrites both as ``enc2:``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

PREFIX = "enc2:"
FERNET_PREFIX = "enc:"  # the form written before ``enc2:``: read, never written
_NONCE = 12
_KEY_ID = 4
_AAD = b"sidan personal data v2"


def derive_key(secret: str) -> str:
    """A key derived from a passphrase (development default only)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).decode()


DEV_DATA_KEY = derive_key("sidan-dev-data-key")


class _Keys:
    """The configured keys: AES-GCM ciphers by key id (the first one encrypts), and a Fernet reader
    for values written in the older form."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one data key is needed")
        material = [base64.urlsafe_b64decode(key) for key in keys]
        if any(len(m) != 32 for m in material):
            raise ValueError("a data key is 32 bytes, URL-safe base64 encoded")
        # A key of its own for AES-GCM, not the Fernet key's bytes reused under another algorithm.
        derived = [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sidan/aes-256-gcm").derive(m) for m in material
        ]
        ids = [hashlib.sha256(key).digest()[:_KEY_ID] for key in derived]
        self.current_id = ids[0]
        self.current = AESGCM(derived[0])
        self.by_id = dict(zip(ids, map(AESGCM, derived), strict=True))
        self.fernet = MultiFernet([Fernet(key) for key in keys])


_keys = _Keys([DEV_DATA_KEY])


def configure(keys: list[str]) -> None:
    """Install the keys (first encrypts). Called once at start-up from settings."""
    global _keys
    _keys = _Keys([key.strip() for key in keys if key.strip()])


def encrypt(value: str) -> str:
    nonce = os.urandom(_NONCE)
    sealed = _keys.current.encrypt(nonce, value.encode(), _AAD)
    return PREFIX + base64.urlsafe_b64encode(_keys.current_id + nonce + sealed).decode()


def decrypt(value: str) -> str:
    if value.startswith(PREFIX):
        try:
            blob = base64.urlsafe_b64decode(value[len(PREFIX) :])
            cipher = _keys.by_id[blob[:_KEY_ID]]
            return cipher.decrypt(blob[_KEY_ID : _KEY_ID + _NONCE], blob[_KEY_ID + _NONCE :], _AAD).decode()
        except (KeyError, InvalidTag, binascii.Error, ValueError) as exc:
            raise _undecryptable() from exc
    if value.startswith(FERNET_PREFIX):
        try:
            return _keys.fernet.decrypt(value[len(FERNET_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise _undecryptable() from exc
    return value  # written before encryption; readable, encrypted by rotate-keys


def _undecryptable() -> RuntimeError:
    return RuntimeError("cannot decrypt personal data: is the right key in SIDAN_DATA_KEYS?")


def rotate(value: str) -> str:
    """Re-encrypt under the first key, in the current form (older forms and plaintext included)."""
    return encrypt(decrypt(value))


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted; Python code only ever sees the plaintext."""

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(str(value))
