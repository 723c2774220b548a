# Which blocks a backup push sends (leither.backup): the difference between a version's Merkle
# tree and the previous pushed version's, found by walking both canonical trees side by side.
# Pure: a BlockStore in, hashes out.
"""Tree diff and random block choice over leither.store trees."""

from . import crypto, store, tree

# The slot of the old tree's node found under its root (_align): held by the root's entry for
# the whole diff, so apart from the per-depth slots (2 * depth, 2 * depth + 1; depth <= 8).
_ALIGN_SLOT = 100


def _manifest(bs, h, bufs=None, slot=0):
    """(level, hashes) of manifest h. With bufs (a dict) a manifest below the roots (slot 2
    and up) is read into the 4 KiB buffer of its slot (taken from leither.tree's pool once,
    then reused): a push reads one per subtree, and a fresh 4 KiB block each time does not
    fit a board's fragmented heap."""
    buf = None
    if bufs is not None and slot >= 2:  # a root is read once per version, often small: as is
        buf = bufs.get(slot)
        if buf is None:
            buf = bufs[slot] = tree.take()
    level, _size, hashes = store.decode_manifest(bs.get(h, buf))
    return level, hashes


def _align(bs, level, hashes, target, bufs=None, slot=0):
    """The node at level target on the leftmost path under (level, hashes), or None."""
    while level > target:
        if not len(hashes):
            return None
        h = bytes(hashes[:32])  # copied: the next read may overwrite the buffer it views
        if not bs.has(h):
            return None
        level, hashes = _manifest(bs, h, bufs, slot)
    return hashes if level == target else None


def tree_diff(bs, new_root, old_root=None):
    """Yield the hashes under new_root (manifests before children) that are not at the same
    place under old_root. Canonical trees put equal content at equal places, so unchanged
    subtrees are skipped unread. RAM: two 4 KiB buffers per level (<= 8 levels), one for the
    new tree's manifest and one for the old's at that depth, reused for every subtree and
    handed back to leither.tree's pool at the end."""
    bufs = {}  # slot -> buffer; slot 2*depth for the new tree, 2*depth + 1 for the old
    try:
        yield from _diff(bs, new_root, old_root, bufs)
    finally:
        for buf in bufs.values():
            tree.give(buf)
        bufs.clear()


def _diff(bs, new_root, old_root, bufs):
    new_root = bytes(new_root)
    if old_root is not None and bytes(old_root) == new_root:
        return
    yield new_root
    level, hashes = _manifest(bs, new_root, bufs, 0)
    old = None
    if old_root is not None and bs.has(old_root):
        old_level, old_hashes = _manifest(bs, old_root, bufs, 1)
        if old_level >= level:
            old = _align(bs, old_level, old_hashes, level, bufs, _ALIGN_SLOT)
        else:
            old = (old_level, old_hashes, bytes(old_root))  # on the new one's leftmost path
    stack = [(level, hashes, old, 0)]  # bound: one entry per level, <= 8
    while stack:
        level, hashes, old, i = stack.pop()
        if 32 * i >= len(hashes):
            continue
        stack.append((level, hashes, old, i + 1))
        h = bytes(hashes[32 * i:32 * i + 32])
        if i and hashes[32 * i - 32:32 * i] == h:
            continue  # as its left sibling (a hole's zero subtrees): sent or kept already
        old_h = None
        sub_old = None
        if isinstance(old, tuple):  # deeper new tree: the old root hangs under child 0
            if i == 0:
                if old[0] == level - 1:
                    old_h = old[2]
                else:
                    sub_old = old
        elif old is not None and 32 * i + 32 <= len(old):
            old_h = bytes(old[32 * i:32 * i + 32])
        if old_h == h:
            continue
        yield h
        if level == 1:
            continue
        # One stack entry per depth: the entry about to go at depth len(stack) owns its slots
        # (the last one there is done; its parents' manifests sit in lower slots).
        depth = len(stack)
        sub_level, sub = _manifest(bs, h, bufs, 2 * depth)
        if old_h is not None and bs.has(old_h):
            sub_old = _manifest(bs, old_h, bufs, 2 * depth + 1)[1]
        stack.append((sub_level, sub, sub_old, 0))


def random_block(bs, record_hash, root):
    """A uniformly-ish random block of a version: its record or a node of its tree."""
    r = crypto.random(2)
    if r[0] < 16:
        return bytes(record_hash)
    h = bytes(root)
    buf = tree.take()  # one buffer down the path: each hash is copied out before the next read
    try:
        while True:
            level, _size, hashes = store.decode_manifest(bs.get(h, buf))
            count = len(hashes) // 32
            if not count or crypto.random(1)[0] < 40:
                return h
            i = int.from_bytes(crypto.random(2), "big") % count
            h = bytes(hashes[32 * i:32 * i + 32])
            if level == 1:
                return h
    finally:
        tree.give(buf)
