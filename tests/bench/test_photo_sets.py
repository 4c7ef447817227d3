"""``bench/photo_sets.py``: photo sets kept whole, stratified folds and subset views (on names and tiny generated
images, never on the real photos)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.photo_sets import (
    build_views, draw_subset, fingerprint, group_folds, group_key, photo_groups, series_key,
)

CLASSES = ("bracelet", "earring", "necklace", "ring", "watch")


@pytest.mark.parametrize("name", ["IMG_5961.jpg", "IMG_5961 - Copy.jpg", "IMG_5961 - Copy (2).jpg", "img_5961 copy.jpg",
                                  "IMG_5961 (1).jpg", "Copy of IMG_5961.jpg", "IMG_5961 - Copy (1).png"])
def test_copies_share_one_normalised_stem(name):
    assert group_key(name) == "img_5961"


def test_a_name_that_is_only_a_marker_is_kept_as_it_is():
    assert group_key("(1).jpg") == "(1)"
    assert group_key("copy.jpg") == "copy"


def test_camera_counters_and_dated_names_are_series_and_catalogue_indices_are_not():
    assert series_key("img_5961") == ("img", 5961)
    assert series_key("dsc01234") == ("dsc", 1234)
    assert series_key("img-20181209-wa0026") == "img:20181209"
    assert series_key("screenshot_20181116-202630_1542453353168") == "screenshot:20181116"
    assert series_key("earring_12") is None
    assert series_key("chandelier_diamond_wedding_earrings") is None


def _names(*names: str, label: str = "bracelet") -> list[tuple[Path, str]]:
    return [(Path(f"/photos/{label}/{n}"), label) for n in names]


def test_copies_and_a_shoot_are_one_group_and_unrelated_photos_are_not():
    items = _names("IMG_5961.jpg", "IMG_5961 - Copy.jpg", "IMG_5963.jpg", "IMG_5990.jpg",
                   "IMG-20181209-WA0026.jpg", "IMG-20181209-WA0101.jpg", "IMG-20181210-WA0001.jpg",
                   "bracelet_001.jpg", "bracelet_002.jpg")
    g = photo_groups(items)
    assert g[0] == g[1] == g[2]          # a copy, and a counter 2 away: one shoot
    assert g[3] != g[0]                  # 29 frames later: another series
    assert g[4] == g[5] != g[6]          # one day's WhatsApp photos; the next day's are another set
    assert len({g[7], g[8], g[0], g[4]}) == 4   # catalogue indices are photos of their own
    assert g[0] == 0 and max(g) == len(set(g)) - 1   # ids 0..G-1, numbered by first appearance


def test_the_same_name_in_two_class_folders_is_two_photos():
    items = _names("images (3).jpg", label="earring") + _names("images (3).jpg", label="ring")
    g = photo_groups(items)
    assert g[0] != g[1]


def _photo(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def test_a_resized_reencoded_copy_under_another_name_joins_its_photo_by_pixels():
    original = _photo(1)
    ok, jpeg = cv2.imencode(".jpg", cv2.resize(original, (70, 70), interpolation=cv2.INTER_AREA),
                            [cv2.IMWRITE_JPEG_QUALITY, 80])
    copy = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    other = _photo(2)
    items = _names("a.jpg", "completely-different-name.jpg", "b.jpg")
    g = photo_groups(items, [fingerprint(original), fingerprint(copy), fingerprint(other)])
    assert g[0] == g[1] != g[2]
    assert photo_groups(items) == [0, 1, 2]   # by names alone, three photos


def test_plain_white_shots_of_different_pieces_are_not_chained_into_one_group():
    """Product shots on white have near-equal difference hashes; the thumbnail check keeps them apart."""
    shots = []
    for i in range(6):
        img = np.full((96, 96, 3), 255, np.uint8)
        cv2.circle(img, (20 + 10 * i, 48), 12 + 2 * i, (40 * i, 120, 200 - 30 * i), -1)
        shots.append(img)
    g = photo_groups(_names(*[f"p{i}.jpg" for i in range(6)]), [fingerprint(s) for s in shots])
    assert len(set(g)) == 6


def _folder(per_class: dict[str, int], series_every: int = 10) -> list[tuple[Path, str]]:
    """Names like real-dev's: catalogue indices, with a series of camera frames (and their copies) every so often."""
    items = []
    for label, n in per_class.items():
        for i in range(n):
            if i % series_every < 3:
                items.append((Path(f"/p/{label}/IMG_{1000 * (i // series_every) + i % series_every}.jpg"), label))
                if i % series_every == 0:
                    items.append((Path(f"/p/{label}/IMG_{1000 * (i // series_every)} - Copy.jpg"), label))
            else:
                items.append((Path(f"/p/{label}/{label}_{i:03d}.jpg"), label))
    return items


def test_folds_keep_every_group_whole_and_spread_each_class_evenly():
    items = _folder({"bracelet": 150, "earring": 300, "necklace": 120, "ring": 90, "watch": 60})
    groups = photo_groups(items)
    labels = [c for _, c in items]
    folds = group_folds(labels, groups, k=3)
    fold_of = {}
    for g, f in zip(groups, folds):
        assert fold_of.setdefault(g, f) == f     # a copy or a series never straddles two folds
    assert len(set(groups)) < len(items)         # there were groups to keep whole
    for label, total in Counter(labels).items():
        per_fold = Counter(f for f, c in zip(folds, labels) if c == label)
        assert set(per_fold) == {0, 1, 2}
        assert max(per_fold.values()) - min(per_fold.values()) <= 4, (label, per_fold)   # 4: the largest group
    assert group_folds(labels, groups, k=3) == folds                    # seeded: the same folds every run


def test_group_folds_refuses_too_few_groups_or_k_below_two():
    with pytest.raises(ValueError, match="k=3 and 2 groups"):
        group_folds(["a", "a", "b"], [0, 0, 1], k=3)
    with pytest.raises(ValueError, match="k >= 2"):
        group_folds(["a", "b"], [0, 1], k=1)


def test_views_have_their_sizes_and_classes_and_never_share_a_photo_or_a_set_across_train_and_held_out():
    items = _folder({"bracelet": 385, "earring": 725, "necklace": 301, "ring": 233, "watch": 171})
    groups = photo_groups(items)
    group_of = dict(zip((p for p, _ in items), groups))
    views = build_views(items, groups, k=3)
    assert [v.name for v in views] == ["fold1of3", "fold2of3", "fold3of3", "subset300x4", "subset600x5"]
    held_together = []
    for v in views:
        train, held = {p for p, _ in v.train}, {p for p, _ in v.held_out}
        assert not train & held
        assert not {group_of[p] for p in train} & {group_of[p] for p in held}
        assert {c for _, c in v.train} == {c for _, c in v.held_out} == set(v.classes)
        if v.kind == "fold":
            assert len(train) + len(held) == len(items)
            held_together += held
    assert len(held_together) == len(set(held_together)) == len(items)   # each photo held out exactly once
    sub300, sub600 = views[3], views[4]
    assert len(sub300.train) == 300 and sub300.classes == ["bracelet", "earring", "necklace", "ring"]
    assert len(sub600.train) == 600 and sub600.classes == list(CLASSES)
    counts = Counter(c for _, c in sub600.train)
    assert counts["earring"] > counts["watch"]   # in proportion to the folder: a store's set is unbalanced
    assert sub300.describe()["train"] == 300 and sub300.describe()["held_out"] == len(sub300.held_out)


def test_a_class_whose_only_set_is_too_large_leaves_room_that_other_sets_fill():
    items = _names(*[f"IMG-20181209-WA{i:04d}.jpg" for i in range(40)], label="watch") \
        + _names(*[f"ring_{i:03d}.jpg" for i in range(100)], label="ring")
    groups = photo_groups(items)
    chosen = draw_subset(items, groups, 60, ["ring", "watch"], seed=0)
    assert len(chosen) == 60 and {c for _, c in chosen} == {"ring"}   # the 40-photo shoot does not fit its quota


def test_draw_subset_refuses_more_photos_than_there_are():
    items = _names("a.jpg", "b.jpg")
    with pytest.raises(ValueError, match="subset of 3: only 2 photos"):
        draw_subset(items, [0, 1], 3, ["bracelet"], seed=0)
