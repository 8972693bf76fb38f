"""`data/meta.mat` as in the ILSVRC-2012 devkit: the synset table, leaves first, then their
WordNet ancestors."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from curation.export.base import ClassInfo

# The devkit's `synsets` struct array (1860x1 for ILSVRC-2012) has, per row: ILSVRC2012_ID (1..1000
# for the classes, in wnid order; then the internal nodes), WNID, words, gloss, num_children,
# children (ILSVRC2012_IDs), wordnet_height (in the full WordNet: a class can have hyponyms that
# are not exported), num_train_images (summed over the
# leaves below an internal node). Loaders keep the rows with num_children == 0 (torchvision's
# parse_meta_mat does exactly that), so the classes must be leaves of this table: an ancestor of
# one class is never a class itself (class selection guarantees it).
FIELDS = (
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
)
# savemat stamps the creation time into the 116-byte text header; a fixed text keeps the file
# identical from run to run.
HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: imnet (ILSVRC-2012 devkit layout)"


def _hierarchy(classes: list[ClassInfo]) -> dict[str, set[str]]:
    """parent wnid -> child wnids, over the classes and all their WordNet ancestors."""
    try:
        from curation.classes import _wordnet, wn_synset

        wn = _wordnet()
    except Exception:  # WordNet missing: a flat table of leaves is still a valid meta.mat
        return {}
    children: dict[str, set[str]] = {}
    todo = [c.wnid for c in classes]
    seen = set(todo)
    while todo:
        w = todo.pop()
        syn = wn_synset(wn, w)
        if syn is None:
            continue
        for p in syn.parents:  # hypernyms and instance hypernyms
            children.setdefault(p, set()).add(w)
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return children


def wordnet_heights(wnids: list[str]) -> dict[str, int]:
    """The devkit's wordnet_height: the longest path down to a leaf of the FULL WordNet noun
    hierarchy (hyponyms and instance hyponyms), not of the exported subtree; wnids WordNet does
    not know are left out (the caller falls back to the subtree height)."""
    from curation.classes import _wordnet

    try:
        wn = _wordnet()
    except Exception:  # WordNet missing
        return {}
    # the cache holds each noun's height over hyponyms and instance hyponyms of all WordNet
    return {w: noun.height for w in wnids if (noun := wn.get(w)) is not None}


def meta_mat(classes: list[ClassInfo], train_counts: list[int]) -> bytes:
    from scipy.io import savemat

    from curation.classes import describe_wordnet

    leaves = {c.wnid for c in classes}
    children = _hierarchy(classes)
    internal = sorted(w for w in children if w not in leaves)
    ids = {c.wnid: c.index + 1 for c in classes}
    for k, w in enumerate(internal):
        ids[w] = len(classes) + 1 + k
    names = describe_wordnet(internal)
    counts = {c.wnid: train_counts[c.index] for c in classes}
    height: dict[str, int] = {w: 0 for w in leaves}
    below: dict[str, set[str]] = {w: {w} for w in leaves}

    def visit(w: str) -> None:
        if w in height:
            return
        for ch in children.get(w, ()):
            visit(ch)
        kids = children.get(w, set())
        height[w] = 1 + max((height[ch] for ch in kids), default=-1)
        below[w] = set().union(*(below[ch] for ch in kids)) if kids else set()

    for w in internal:
        visit(w)
    height.update(wordnet_heights(sorted(height)))
    rows: list[tuple[Any, ...]] = []
    for c in classes:
        rows.append(
            (
                c.index + 1,
                c.wnid,
                ", ".join(c.words),
                c.gloss,
                0,
                [],
                height[c.wnid],
                counts[c.wnid],
            )
        )
    for w in internal:
        kids = sorted(ids[ch] for ch in children[w])
        words, gloss = names[w]
        n_train = sum(counts[leaf] for leaf in below[w])
        rows.append((ids[w], w, ", ".join(words), gloss, len(kids), kids, height[w], n_train))
    table = np.empty((len(rows), 1), dtype=[(f, object) for f in FIELDS])
    for i, (sid, wnid, words, gloss, nch, kids, h, ntr) in enumerate(rows):
        table[i, 0] = (
            np.array([[sid]], dtype=np.uint16 if len(rows) < 65536 else np.int32),
            wnid,
            words,
            gloss,
            np.array([[nch]], dtype=np.uint16 if len(rows) < 65536 else np.int32),
            np.array([kids], dtype=np.uint16 if len(rows) < 65536 else np.int32)
            if kids
            else np.zeros((0, 0), dtype=np.uint16),
            np.array([[h]], dtype=np.uint8),
            np.array([[ntr]], dtype=np.int32),
        )
    buf = io.BytesIO()
    savemat(buf, {"synsets": table}, format="5", do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = HEADER.ljust(116)
    return bytes(data)
