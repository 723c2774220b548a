# Which blocks a backup push sends (leither.backup): the difference between a version's Merkle
# tree and the previous pushed version's, found by walking both canonical trees side by side.
# Pure: a BlockStore in, hashes out.
"""Tree diff and random block choice over leither.store trees."""

from . import crypto, tree

# The slot of the old tree's node found under its root (_align): held by the root's entry for
# the whole diff, so apart from the per-depth slots (2 * depth, 2 * depth + 1; depth <= 8).
_ALIGN_SLOT = 100


def _manifest(bs, h, wins, slot):
    """Manifest h as a tree.Hashes over the window of its slot (made once per diff, reused by
    every manifest at that place): a push reads one per subtree, and neither a pooled 4 KiB
    buffer nor a fresh block of a manifest's size is taken from a board's busy heap."""
    win = wins.get(slot)
    if win is None:
        win = wins[slot] = bytearray(tree.WINDOW)
    return tree.Hashes(bs, h, win)


def _align(bs, m, target, wins):
    """The node at level target on the leftmost path under manifest m, or None."""
    while m.level > target:
        if not m.count:
            return None
        h = bytes(m.at(0))  # copied: the next read may overwrite the window it views
        if not bs.has(h):
            return None
        m = _manifest(bs, h, wins, _ALIGN_SLOT)
    return m if m.level == target else None


def tree_diff(bs, new_root, old_root=None):
    """Yield the hashes under new_root (manifests before children) that are not at the same
    place under old_root. Canonical trees put equal content at equal places, so unchanged
    subtrees are skipped unread. RAM: two tree.WINDOW windows per level (<= 8 levels), one
    for the new tree's manifest and one for the old's at that depth, reused for every
    subtree."""
    new_root = bytes(new_root)
    if old_root is not None and bytes(old_root) == new_root:
        return
    yield new_root
    wins = {}  # slot -> window; slot 2*depth for the new tree, 2*depth + 1 for the old
    m = _manifest(bs, new_root, wins, 0)
    old = None
    if old_root is not None and bs.has(old_root):
        o = _manifest(bs, old_root, wins, 1)
        if o.level >= m.level:
            old = _align(bs, o, m.level, wins)
        else:
            old = (o.level, bytes(old_root))  # on the new one's leftmost path
    stack = [(m, old)]  # bound: one entry per level, <= 8
    while stack:
        m, old = stack[-1]
        h = m.next_child()  # a run of equal siblings (a hole): sent or kept once
        if h is None:
            stack.pop()
            continue
        i = m.i - 1
        old_h = None
        sub_old = None
        if isinstance(old, tuple):  # deeper new tree: the old root hangs under child 0
            if i == 0:
                if old[0] == m.level - 1:
                    old_h = old[1]
                else:
                    sub_old = old
        elif old is not None and i < old.count:
            old_h = bytes(old.at(i))
        if old_h == h:
            continue
        yield h
        if m.level == 1:
            continue
        # One stack entry per depth: the entry about to go at depth len(stack) owns its slots
        # (the last one there is done; its parents' manifests sit in lower slots).
        depth = len(stack)
        sub = _manifest(bs, h, wins, 2 * depth)
        if old_h is not None and bs.has(old_h):
            sub_old = _manifest(bs, old_h, wins, 2 * depth + 1)
        stack.append((sub, sub_old))


def random_block(bs, record_hash, root):
    """A uniformly-ish random block of a version: its record or a node of its tree."""
    r = crypto.random(2)
    if r[0] < 16:
        return bytes(record_hash)
    h = bytes(root)
    win = bytearray(tree.WINDOW)  # one window down the path: each hash copied out first
    while True:
        m = tree.Hashes(bs, h, win)
        if not m.count or crypto.random(1)[0] < 40:
            return h
        h = bytes(m.at(int.from_bytes(crypto.random(2), "big") % m.count))
        if m.level == 1:
            return h
