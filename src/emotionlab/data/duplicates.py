"""Near-duplicate finding: 64-bit perceptual hashes, Hamming distances between them, and transitive groups.

Two images whose hashes (``imagehash.phash`` of the RGB image) differ in at most ``threshold`` bits are twins,
and twins are grouped transitively (union-find), so a resized copy of a re-encoded copy lands in the same group
as the original. Used by the audit, the manifest's duplicate groups, ``data import`` and the person grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# Hamming distance (bits out of 64) at or below which two images count as the same picture. Chosen by measurement
# on seed-emotions (benchmarks/audit_seed.py -> benchmarks/results/phash_threshold.json): nearest-neighbour
# distances there have a gap at 8 between the duplicates (<= 6) and the distinct images (>= 10).
DEFAULT_THRESHOLD = 6


def perceptual_hash(image) -> int:
    """64-bit perceptual hash (``imagehash.phash``) of an RGB ``PIL.Image`` as an unsigned integer."""
    import imagehash

    bits = imagehash.phash(image).hash.flatten()  # row-major, first bit most significant, as str(ImageHash)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def popcount(values: np.ndarray) -> np.ndarray:
    """The number of set bits of every ``uint64`` in ``values`` (the Hamming distance of XORed hashes)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    table = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return table[as_bytes].sum(axis=-1, dtype=np.uint8)


def hamming_blocks(hashes: np.ndarray, block: int = 1024) -> Iterable[tuple[int, np.ndarray]]:
    """Yield ``(start, distances)`` with the Hamming distances of rows ``start:start+block`` to all hashes.

    Blocks keep memory at ``block * n`` bytes, so 35,000 images need ~36 MB rather than a 1.2 G-entry matrix.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, len(hashes), block):
        yield start, popcount(hashes[start : start + block, None] ^ hashes[None, :]).astype(np.uint8)


def near_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose hashes differ in at most ``threshold`` bits: arrays ``(i, j, distance)``."""
    firsts, seconds, distances = [], [], []
    for start, block in hamming_blocks(hashes):
        rows, cols = np.nonzero(block <= threshold)
        rows = rows + start
        keep = cols > rows
        firsts.append(rows[keep])
        seconds.append(cols[keep])
        distances.append(block[rows[keep] - start, cols[keep]])
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances).astype(np.int64)


def nearest_distances(hashes: np.ndarray) -> np.ndarray:
    """For each hash, the Hamming distance to its closest other hash (64 when it is alone)."""
    result = np.full(len(hashes), 64, dtype=np.int64)
    for start, block in hamming_blocks(hashes):
        rows = np.arange(block.shape[0])
        block[rows, rows + start] = 64  # ignore self
        result[start : start + block.shape[0]] = block.min(axis=1)
    return result


def _components(size: int, firsts: Sequence[int], seconds: Sequence[int]) -> list[int]:
    """Union-find: the representative of every index after joining each pair."""
    parent = list(range(size))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first, second in zip(firsts, seconds, strict=True):
        a, b = find(int(first)), find(int(second))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [find(index) for index in range(size)]


def union_ids(keys: Sequence[str], pairs: Sequence[tuple[int, int]], prefix: str) -> list[str]:
    """Group ids after joining every pair transitively: ``prefix0001``, ... numbered by each group's first key."""
    roots = _components(len(keys), [first for first, _ in pairs], [second for _, second in pairs])
    first_key: dict[int, str] = {}
    for root, key in zip(roots, keys, strict=True):
        first_key[root] = min(first_key.get(root, key), key)
    ordered = sorted(first_key, key=first_key.__getitem__)
    width = max(4, len(str(len(ordered))))
    names = {root: f"{prefix}{number:0{width}d}" for number, root in enumerate(ordered, start=1)}
    return [names[root] for root in roots]


def group_ids(paths: Sequence[str], hashes: Sequence[int], threshold: int) -> list[str]:
    """A duplicate-group id for every image: images within ``threshold`` bits, transitively, share one id.

    Ids (``g0001``, ...) number the groups by their first path in sorted order, so the same files and threshold
    always give the same ids; an image with no twin gets an id of its own.
    """
    array = np.array([int(value) for value in hashes], dtype=np.uint64)
    firsts, seconds, _ = near_pairs(array, threshold)
    return union_ids(paths, list(zip(firsts, seconds, strict=True)), "g")
