"""Hash chain over full cache blocks: block i's key covers every token from 0 to its end.

The chain seed mixes in the model fingerprint and the cache namespace (one per account), so
two accounts with the same prompt never map to the same key, and a disk cache directory
shared by two different checkpoints never serves one's latents to the other.
"""
from __future__ import annotations

import hashlib
from array import array


def chain_seed(namespace: str, salt: str = "") -> bytes:
    return hashlib.sha256(f"prefix-cache\x00{salt}\x00{namespace}".encode()).digest()


def block_hash(parent: bytes, token_ids) -> bytes:
    h = hashlib.sha256(parent)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


def extend_chain(hashes: list[bytes], seed: bytes, token_ids: list[int], block_size: int) -> list[bytes]:
    """Append the keys of full blocks not hashed yet; returns the same list."""
    num_full = len(token_ids) // block_size
    for i in range(len(hashes), num_full):
        parent = hashes[i - 1] if i else seed
        hashes.append(block_hash(parent, token_ids[i * block_size:(i + 1) * block_size]))
    return hashes
