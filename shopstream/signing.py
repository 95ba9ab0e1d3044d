"""Signatures on the records that workers write for themselves.

The internal topics (entity updates, drift inputs, session orders) and the state
changelogs are trusted by the workers that read them: an update is applied, a state is
restored. Anything that can write to the brokers could write a well-formed forgery there
(a label that wins over the real one, a state of its choosing). So every internal record
carries an HMAC-SHA256 of its key and value under ``settings.internal_key``, in front of
the value; a reader refuses a record whose signature is missing or wrong (a dead letter,
or a state started afresh). Input topics are not signed: shops write them, and they are
validated instead (``shopstream.events``). docs/operations.md, "Trust boundary".

>>> signer = Signer(b"k" * 32)
>>> signed = signer.sign(b"user:u1", b"state")
>>> signer.verify(b"user:u1", signed)
b'state'
>>> signer.verify(b"user:u2", signed)
Traceback (most recent call last):
...
shopstream.signing.Unsigned: a record whose signature does not match its key and value
"""

from __future__ import annotations

import hashlib
import hmac

MAC_BYTES = 32


class Unsigned(ValueError):
    """An internal record without a valid signature: forged, damaged, or from a worker
    with another key."""


class Signer:
    """Signs and verifies internal records with one secret key."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("an internal key needs at least 16 bytes")
        self._secret = secret

    def _mac(self, key: bytes | None, value: bytes) -> bytes:
        # The key's length goes first, so that no split of key + value makes another record.
        head = b"\xff\xff\xff\xff" if key is None else len(key).to_bytes(4, "big") + key
        return hmac.new(self._secret, head + value, hashlib.sha256).digest()

    def sign(self, key: bytes | None, value: bytes) -> bytes:
        """``value`` with the signature of ``key`` and ``value`` in front."""
        return self._mac(key, value) + value

    def verify(self, key: bytes | None, signed: bytes) -> bytes:
        """The value of a record that ``sign`` made, or ``Unsigned``."""
        if not isinstance(signed, bytes | bytearray) or len(signed) < MAC_BYTES:
            raise Unsigned("a record too short to carry a signature")
        mac, value = signed[:MAC_BYTES], bytes(signed[MAC_BYTES:])
        if not hmac.compare_digest(mac, self._mac(key, value)):
            raise Unsigned("a record whose signature does not match its key and value")
        return value
