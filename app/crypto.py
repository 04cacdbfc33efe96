"""Personal data at rest (个人信息加密): phone numbers are stored encrypted with AES-256-GCM, keys from
settings.

``SIDAN_DATA_KEYS`` is a comma-separated list of keys (32 random bytes, URL-safe base64: what
``Fernet.generate_key()`` prints): the first encrypts, all decrypt, so a key is rotated by putting a
new one first and re-encrypting at leisure (``sidan rotate-keys``).

A stored value is ``enc2:`` + base64url(key id ‖ nonce ‖ ciphertext ‖ tag): the key id (4 bytes of a
hash of the key) picks the key, so reading one is a single AES-GCM call. Older forms still read:
``enc:`` + a Fernet token (AES-128-CBC + HMAC-SHA256, written before ``enc2:``) and plaintext from
before encryption was switched on; ``rotate-keys`` rewrites both as ``enc2:``.

Encrypted values cannot be searched, so a phone also gets a lookup hash (``phone_hash``): HMAC-SHA256
of its digits under a key of its own, ``SIDAN_LOOKUP_KEY``, or, unset, one derived from the *last* key
of ``SIDAN_DATA_KEYS`` (the oldest: it stays while newer keys are put first). Imports find a volunteer
or resident by phone through it, and unique indexes on it keep one profile per phone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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


def _lookup_key_from(material: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sidan/phone-lookup").derive(
        base64.urlsafe_b64decode(material)
    )


_lookup_key = _lookup_key_from(DEV_DATA_KEY)


def configure(keys: list[str], lookup_key: str | None = None) -> None:
    """Install the keys (first encrypts) and the lookup-hash key (default: from the last data key).
    Called once at start-up from settings."""
    global _keys, _lookup_key
    keys = [key.strip() for key in keys if key.strip()]
    _keys = _Keys(keys)
    _lookup_key = _lookup_key_from(lookup_key.strip() if lookup_key and lookup_key.strip() else keys[-1])


def phone_digits(phone: str) -> str:
    """The digits that identify a phone: ``+86 138-1234-5678`` and ``13812345678`` are one number."""
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits


def lookup_hash(phone: str | None) -> bytes | None:
    """The phone's lookup hash (盲索引): equal for equal numbers, useless without the key."""
    if phone is None:
        return None
    return hmac.new(_lookup_key, phone_digits(phone).encode(), hashlib.sha256).digest()


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
