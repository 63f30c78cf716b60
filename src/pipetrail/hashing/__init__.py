"""Canonical encoding and digests: the only way pipetrail turns values into identities.

Owns: the digest format (``blake3:<64 lowercase hex>``), canonical JSON, value
fingerprints (with the registry of fingerprints by type) and code fingerprints. Imports only
``pipetrail.core`` and ``pipetrail.errors``; library types are recognized by name, never
imported.
"""

from __future__ import annotations

from pipetrail.hashing.canonical import canonical_bytes as canonical_bytes
from pipetrail.hashing.canonical import canonical_json as canonical_json
from pipetrail.hashing.digest import DIGEST_ALGORITHM as DIGEST_ALGORITHM
from pipetrail.hashing.digest import Hasher as Hasher
from pipetrail.hashing.digest import digest_bytes as digest_bytes
from pipetrail.hashing.digest import digest_file as digest_file
from pipetrail.hashing.digest import digest_value as digest_value
from pipetrail.hashing.digest import is_digest as is_digest
from pipetrail.hashing.fingerprint import fingerprint as fingerprint
from pipetrail.hashing.fingerprint_types import register_fingerprint as register_fingerprint

__all__ = [
    "DIGEST_ALGORITHM",
    "Hasher",
    "canonical_bytes",
    "canonical_json",
    "digest_bytes",
    "digest_file",
    "digest_value",
    "fingerprint",
    "is_digest",
    "register_fingerprint",
]
