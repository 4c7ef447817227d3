"""Views of a photo folder that a recipe can be scored on without learning one validation set.

A recipe picked on one validation set learns that set (issue 33: a default chosen by ~55 comparisons on
``real-dev/val`` lost 10 points on a store's own 300 photos). So ``bench/real_photos.py --views`` scores
every candidate on several *views* of the pooled photos (``train/`` + ``val/``):

* **k-fold splits**, stratified by class, with **whole photo sets kept in one fold**: the folder holds copies
  (``IMG_5961.jpg`` and ``IMG_5961 - Copy.jpg``), numbered series from one shoot (``IMG_5961`` …
  ``IMG_5963``, ``IMG-20190315-WA0012``) and re-encoded near-duplicates under other names. A copy on both
  sides of a split scores memory, not recognition, so :func:`photo_groups` joins them first: by normalised
  file stem (:func:`group_key`), by camera counters close together (:data:`SERIES_GAP`) or one day's dated
  names, and by pixels (:func:`fingerprint`: a 64-bit difference hash at most :data:`HASH_DISTANCE` bits
  apart *and* 16x16 thumbnails at most :data:`THUMB_DIFF` grey levels apart on average; the hash alone
  chains every product shot on white into one group);
* **subsets** of a store's size (300 photos in 4 classes, 600 in 5), drawn group by group from the photos
  outside one fold and scored on that fold.

Nothing here trains or imports torch: the views are lists of ``(path, class)`` that the bench writes as the
trainer's CSV (``path,label``), so the photos are read in place and never copied.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

Item = tuple[Path, str]

#: Camera counters at most this far apart, under the same prefix, are one series (one shoot).
SERIES_GAP = 3
#: Difference hashes at most this many bits apart (of 64), with thumbnails at most :data:`THUMB_DIFF` apart
#: (mean absolute difference of 16x16 BGR thumbnails, 0-255), are the same photo (re-encoded, resized,
#: renamed) or the same shoot's layout. On real-dev's 1,815 photos, 6 bits / 6 levels chained 343 photos of
#: different pieces into one group; 2 / 3 joins 389 pairs (exact copies, and catalogue shots of one set).
HASH_DISTANCE = 2
THUMB_DIFF = 3.0
#: A pixel is background when every channel is at least this bright (product shots on white).
WHITE_LEVEL = 225

_COPY_MARKERS = (
    re.compile(r"\s*-\s*copy(\s*\(\d+\))?$"),   # "IMG_5961 - Copy", "IMG_5961 - Copy (2)"
    re.compile(r"[\s_-]+copy(\s*\d+)?$"),        # "IMG_5961 copy", "IMG_5961_copy2"
    re.compile(r"^copy\s+of\s+"),                # "Copy of IMG_5961"
    re.compile(r"\s*\(\d+\)$"),                   # "IMG_5961 (1)"
)
#: Names a camera or phone gives: a prefix and a counter (``IMG_5961``, ``DSC01234``, ``P1010123``).
_CAMERA = re.compile(r"^(img|dsc|dscn|dscf|pict|pxl|mvimg|p|sam|gopr)[-_]?(\d{3,8})$")
#: Names with a day in them (``IMG-20190315-WA0012``, ``Screenshot_20190315-101112``): one day, one series.
_DATED = re.compile(r"^([a-z]+)[-_](\d{8})(?:[-_].*)?$")


def group_key(path: str | Path) -> str:
    """The file stem with copy markers removed, lowercased: the copies of one photo share it."""
    stem = Path(path).stem.lower().strip()
    changed = True
    while changed:
        changed = False
        for marker in _COPY_MARKERS:
            stripped = marker.sub("", stem).strip()
            if stripped and stripped != stem:
                stem, changed = stripped, True
    return stem


def series_key(stem: str) -> tuple[str, int] | str | None:
    """A normalised stem's series: ``(prefix, counter)`` for a camera counter (joined when close), a
    ``prefix:day`` string for a dated name (joined when equal), ``None`` for any other name."""
    if m := _CAMERA.match(stem):
        return m.group(1), int(m.group(2))
    if m := _DATED.match(stem):
        return f"{m.group(1)}:{m.group(2)}"
    return None


def fingerprint(image: np.ndarray) -> tuple[int, np.ndarray]:
    """:func:`dhash` and a 16x16 thumbnail (float32, flattened) of a BGR image: what :func:`photo_groups` compares."""
    colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    thumb = cv2.resize(colour, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return dhash(colour), thumb


def dhash(image: np.ndarray) -> int:
    """A 64-bit difference hash: the sign of horizontal steps on a 9x8 grey thumbnail (survives resizing,
    re-encoding and small colour changes; a different photo differs in ~32 bits)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def photo_groups(items: Sequence[Item], prints: Sequence[tuple[int, np.ndarray]] | None = None) -> list[int]:
    """A group id per item (0..G-1, in order of first appearance): copies, series and look-alikes share one.

    Args:
        items: ``(path, class)`` pairs. Names are compared within a class (``images (3).jpg`` in two class
            folders are two photos); pixels across all classes.
        prints: :func:`fingerprint` per item (``None``: names only).
    """
    union = _Union(len(items))
    first: dict[tuple[str, str], int] = {}
    counters: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for i, (path, label) in enumerate(items):
        stem = group_key(path)
        key = (label, stem)
        if key in first:
            union.join(first[key], i)
        else:
            first[key] = i
        series = series_key(stem)
        if isinstance(series, tuple):
            counters[(label, series[0])].append((series[1], i))
        elif series is not None:
            key = (label, "series:" + series)
            if key in first:
                union.join(first[key], i)
            else:
                first[key] = i
    for numbered in counters.values():
        numbered.sort()
        for (a, i), (b, j) in zip(numbered, numbered[1:]):
            if b - a <= SERIES_GAP:
                union.join(i, j)
    if prints is not None and len(prints) > 1:
        h = np.array([int(x) for x, _ in prints], dtype=np.uint64)
        thumbs = np.stack([t for _, t in prints])
        for i in range(len(h) - 1):
            diff = np.bitwise_xor(h[i + 1:], h[i])
            distance = np.unpackbits(diff.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
            for j in np.flatnonzero(distance <= HASH_DISTANCE):
                if np.abs(thumbs[i] - thumbs[i + 1 + j]).mean() <= THUMB_DIFF:
                    union.join(i, i + 1 + int(j))
    ids: dict[int, int] = {}
    return [ids.setdefault(union.find(i), len(ids)) for i in range(len(items))]


def background_fraction(image: np.ndarray) -> float:
    """The share of pixels that are near-white on every channel (:data:`WHITE_LEVEL`): 0.83 for the median
    real-dev photo; ~0.16 for the median photo of issue 33's store set (pieces worn in scenes)."""
    return float((image >= WHITE_LEVEL).all(axis=-1).mean())


@dataclass
class View:
    """One way to score a recipe: training photos, held-out photos, and where they came from."""

    name: str
    kind: str
    train: list[Item]
    held_out: list[Item]
    classes: list[str]
    note: str = ""
    groups: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "classes": self.classes, "note": self.note,
                "train": len(self.train), "held_out": len(self.held_out),
                "train_per_class": dict(sorted(Counter(c for _, c in self.train).items())),
                "held_out_per_class": dict(sorted(Counter(c for _, c in self.held_out).items())), **self.groups}


def group_folds(labels: Sequence[str], groups: Sequence[int], k: int, seed: int = 0) -> list[int]:
    """A fold (0..k-1) per item: every group in one fold, each class spread evenly over the folds.

    Groups go largest first (ties in a seeded random order) to the fold that holds the fewest photos of the
    group's main class so far, then the fewest photos in all.

    Raises:
        ValueError: ``k`` below 2, or fewer groups than folds.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    if k < 2 or len(members) < k:
        raise ValueError(f"k-fold: need k >= 2 and at least k groups, got k={k} and {len(members)} groups")
    rng = np.random.default_rng(seed)
    order = sorted(members, key=lambda g: (-len(members[g]), rng.random()))
    per_class = [Counter() for _ in range(k)]
    sizes = [0] * k
    fold_of_group = {}
    for g in order:
        main = Counter(labels[i] for i in members[g]).most_common(1)[0][0]
        f = min(range(k), key=lambda f: (per_class[f][main], sizes[f], f))
        fold_of_group[g] = f
        for i in members[g]:
            per_class[f][labels[i]] += 1
        sizes[f] += len(members[g])
    return [fold_of_group[g] for g in groups]


def draw_subset(items: Sequence[Item], groups: Sequence[int], size: int, classes: Sequence[str],
                seed: int) -> list[Item]:
    """``size`` photos of ``classes``, whole groups only, each class in proportion to its share of ``items``
    (at least one group each): a store's own photo set. A group that would overfill its class is passed over,
    and the room it leaves is filled with whole groups of any class.

    Raises:
        ValueError: fewer photos of ``classes`` than ``size``.
    """
    pool = [(item, g) for item, g in zip(items, groups) if item[1] in classes]
    if len(pool) < size:
        raise ValueError(f"subset of {size}: only {len(pool)} photos of {', '.join(classes)} to draw from")
    counts = Counter(item[1] for item, _ in pool)
    quota = {c: max(1, round(size * counts[c] / len(pool))) for c in classes}
    quota[max(classes, key=lambda c: counts[c])] += size - sum(quota.values())
    by_group: dict[int, list[Item]] = defaultdict(list)
    for item, g in pool:
        by_group[g].append(item)
    rng = np.random.default_rng(seed)
    chosen: list[Item] = []
    taken = Counter()
    for g in rng.permutation(sorted(by_group)):
        members = by_group[int(g)]
        label = Counter(c for _, c in members).most_common(1)[0][0]
        if taken[label] + len(members) <= quota[label]:
            chosen.extend(members)
            taken[label] += len(members)
    # A class whose sets are all larger than its quota (one shoot of 143 watches) leaves room: fill it with
    # whole sets of any class, so that the view has the size it is named for.
    inside = {path for path, _ in chosen}
    for g in rng.permutation(sorted(by_group)):
        members = by_group[int(g)]
        if members[0][0] not in inside and len(chosen) + len(members) <= size:
            chosen.extend(members)
    return chosen


def build_views(items: Sequence[Item], groups: Sequence[int], *, k: int = 3, subsets: Sequence[tuple[int, int]] = (
        (300, 4), (600, 5)), seed: int = 0) -> list[View]:
    """The k fold views (train on k-1 folds, score on the other) and one subset view per ``(size, classes)``.

    Subset ``j`` is drawn from the photos outside fold ``j % k`` and scored on that fold's photos of its
    classes; with fewer classes than the folder has, the first ones in name order are kept (for real-dev:
    bracelet, earring, necklace, ring: a store without watches).
    """
    labels = [c for _, c in items]
    classes = sorted(set(labels))
    folds = group_folds(labels, groups, k, seed)
    n_groups = len(set(groups))
    views = []
    for f in range(k):
        train = [it for it, fo in zip(items, folds) if fo != f]
        held = [it for it, fo in zip(items, folds) if fo == f]
        views.append(View(f"fold{f + 1}of{k}", "fold", train, held, classes,
                          f"{k}-fold, fold {f + 1} held out, whole photo sets per fold",
                          {"groups_total": n_groups, "groups_held_out": len({g for g, fo in zip(groups, folds)
                                                                             if fo == f})}))
    for j, (size, n_classes) in enumerate(subsets):
        f = j % k
        keep = classes[:n_classes]
        outside = [(it, g) for it, g, fo in zip(items, groups, folds) if fo != f]
        train = draw_subset([it for it, _ in outside], [g for _, g in outside], size, keep, seed + j)
        held = [it for it, fo in zip(items, folds) if fo == f and it[1] in keep]
        views.append(View(f"subset{size}x{n_classes}", "subset", train, held, list(keep),
                          f"{len(train)} photos in {n_classes} classes drawn by whole sets from outside fold "
                          f"{f + 1}; scored on fold {f + 1}", {"groups_total": n_groups}))
    return views
