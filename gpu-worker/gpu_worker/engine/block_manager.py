"""Paged latent cache bookkeeping and prefix reuse. A block is free, in use (ref_count > 0) or
cached (ref_count 0, its key still maps to it for a later request with the same prefix; evicted
least recently used first, to the disk tier if there is one).

A full block's key chains SHA-256 over every token up to its end, seeded with the model fingerprint
and the cache namespace (one per account): accounts never share a key, and a disk tier shared by
two checkpoints never serves one's latents to the other.
"""
from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass

from .disk_cache import DiskCache
from .sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    key: bytes | None = None


@dataclass
class PrefixMatch:
    device_blocks: list[int]  # blocks already holding this prefix on the device
    disk_keys: list[bytes]    # following blocks found on disk


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int = 64, salt: str = "",
                 disk: DiskCache | None = None, cache=None):
        """cache: the ModelRunner holding the blocks (read_block, write_block): the disk tier's."""
        self.block_size = block_size
        self.salt = salt
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_ids: deque[int] = deque(range(num_blocks))
        self.cached_ids: OrderedDict[int, None] = OrderedDict()  # ref 0 with key; oldest first
        self.key_to_block: dict[bytes, int] = {}
        self.disk, self.cache = disk, cache
        self.stats = dict.fromkeys(("lookups", "queried_tokens", "hit_tokens", "disk_hit_blocks",
                                    "evicted_blocks", "spilled_blocks"), 0)  # /health's "cache"

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_ids) + len(self.cached_ids)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _take_block(self) -> int:
        if self.free_ids:
            block_id = self.free_ids.popleft()
        else:
            block_id, _ = self.cached_ids.popitem(last=False)
            block = self.blocks[block_id]
            self.stats["evicted_blocks"] += 1
            self._spill(block)
            del self.key_to_block[block.key]
            block.key = None
        self.blocks[block_id].ref_count = 1
        return block_id

    def _spill(self, block: Block) -> None:
        if self.disk is not None and block.key not in self.disk:
            self.disk.save(block.key, self.cache.read_block(block.block_id))
            self.stats["spilled_blocks"] += 1

    # ---- prefix reuse
    def hashes(self, seq: Sequence) -> list[bytes]:
        """The keys of seq's full blocks (seq.block_keys, extended as it grows)."""
        keys, bs = seq.block_keys, self.block_size
        for i in range(len(keys), len(seq) // bs):
            seed = f"prefix-cache\x00{self.salt}\x00{seq.namespace}".encode()
            h = hashlib.sha256(keys[-1] if keys else hashlib.sha256(seed).digest())
            h.update(array("q", seq.token_ids[i * bs:(i + 1) * bs]).tobytes())
            keys.append(h.digest())
        return keys

    def match_prefix(self, seq: Sequence) -> PrefixMatch:
        """Longest run of full blocks from token 0 that need no compute, ending before the last
        token (which must run through the model to give the first sampled token's logits)."""
        device, disk = [], []
        for key in self.hashes(seq)[: (len(seq) - 1) // self.block_size]:
            if not disk and key in self.key_to_block:
                device.append(self.key_to_block[key])
            elif self.disk is not None and key in self.disk:
                disk.append(key)
            else:
                break
        return PrefixMatch(device, disk)

    def can_allocate(self, match: PrefixMatch, num_new_blocks: int) -> bool:
        revived = sum(1 for b in match.device_blocks if self.blocks[b].ref_count == 0)
        return self.num_free_blocks - revived >= len(match.disk_keys) + num_new_blocks

    def allocate_prefix(self, seq: Sequence, match: PrefixMatch) -> int:
        """Attach the matched blocks to seq (loading disk ones); returns reused token count."""
        for block_id in match.device_blocks:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.cached_ids[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        for key in match.disk_keys:
            latents = self.disk.load(key)
            if latents is None:  # vanished or unreadable: compute from here on
                break
            block_id = self._take_block()
            self.cache.write_block(block_id, latents)
            self._register(self.blocks[block_id], key)
            seq.block_table.append(block_id)
            self.stats["disk_hit_blocks"] += 1
        reused = len(seq.block_table) * self.block_size
        seq.num_computed_tokens = reused
        self.stats["lookups"] += 1
        self.stats["queried_tokens"] += len(seq)
        self.stats["hit_tokens"] += reused
        return reused

    def _register(self, block: Block, key: bytes) -> None:
        if key not in self.key_to_block:  # else an identical block exists: this one stays private
            block.key = key
            self.key_to_block[key] = block.block_id

    def register_full_blocks(self, seq: Sequence) -> None:
        """Give keys to seq's blocks that became full of computed tokens."""
        keys = self.hashes(seq)
        for i in range(min(seq.num_computed_tokens // self.block_size, len(keys))):
            block = self.blocks[seq.block_table[i]]
            if block.key is None:
                self._register(block, keys[i])

    # ---- growth and release
    def ensure_capacity(self, seq: Sequence, num_tokens: int) -> bool:
        need = self.blocks_for(num_tokens) - len(seq.block_table)
        if need > self.num_free_blocks:
            return False
        for _ in range(need):
            seq.block_table.append(self._take_block())
        return True

    def free(self, seq: Sequence) -> None:
        # Reverse order: a sequence's last blocks cover the longest, least shared prefixes,
        # so they should be the first to be evicted.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.key is not None:
                    self.cached_ids[block_id] = None
                else:
                    self.free_ids.append(block_id)
        seq.block_table = []
        seq.num_computed_tokens = 0

    def spill_all(self) -> None:
        """Write every keyed block to the disk tier (before shutdown)."""
        for block in self.blocks:
            if block.key is not None:
                self._spill(block)
