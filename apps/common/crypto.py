"""Encrypting secrets at rest (provider API keys, webhook secrets) with Fernet (AES-128-CBC + HMAC).

Keys come from ``ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first, so keys can
be rotated: old ciphertexts still decrypt, new ones use the first key). Without it, one
key is derived from ``SECRET_KEY`` with HKDF, which is fine for the embedded start.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class DecryptionFailed(Exception):
    """The ciphertext was not made with any configured key (or was tampered with)."""


@cache
def _fernet() -> MultiFernet:
    keys = [key.strip() for key in settings.ENCRYPTION_KEYS if key.strip()]
    if not keys:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"trueup-secrets", info=b"fernet").derive(
            settings.SECRET_KEY.encode()
        )
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionFailed("the secret could not be decrypted with the configured keys") from exc
