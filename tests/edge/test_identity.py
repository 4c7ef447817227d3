"""The identity measures after a hand (edge.loop.identity): a small piece of another colour changes a few
blocks of the slot's look a lot (``identity_local``), which the mean over every block hides; the border
blocks, where a hand's shadow comes in, are left out."""
from __future__ import annotations

import numpy as np

from edge.config.states import StatesConfig
from edge.loop.identity import detail_of, is_other, local_of, look_of, measures, ncc, window_of


def window(look: np.ndarray) -> tuple:
    emb = np.ones(4, np.float32) / 2.0
    return emb, look, np.zeros((32, 32), np.float32)


def test_a_small_piece_of_another_colour_is_another_piece_only_with_the_local_measure():
    tray = np.full((8, 8, 3), 0.5, np.float32)
    pink, white = tray.copy(), tray.copy()
    pink[3:5, 3:5] = (0.9, 0.5, 0.9)       # a pendant of four blocks in the middle of the slot
    white[3:5, 3:5] = (0.9, 0.9, 0.9)
    cfg = StatesConfig(identity_detail=0)
    cos, diff, _, local = measures(window(pink), window(white), cfg)
    assert cos > 0.999 and diff < 0.01 and local == 0.0        # off: reported as passing
    assert not is_other(window(pink), window(white), cfg)
    on = StatesConfig(identity_detail=0, identity_local=0.1)
    assert measures(window(pink), window(white), on)[3] > 0.13
    assert is_other(window(pink), window(white), on)
    assert not is_other(window(white), window(white), on)


def test_the_border_blocks_are_left_out_so_a_shadow_at_the_edge_is_not_another_piece():
    tray = np.full((8, 8, 3), 0.5, np.float32)
    shadow = tray.copy()
    shadow[:, 0] = 0.1                      # a sleeve's shadow along the left edge
    assert local_of(tray, shadow, margin=0) > 0.39
    assert local_of(tray, shadow, margin=1) == 0.0
    cfg = StatesConfig(identity_detail=0, identity_local=0.1)
    assert not is_other(window(tray), window(shadow), cfg)
    assert is_other(window(tray), window(shadow), StatesConfig(identity_detail=0, identity_local=0.1,
                                                               identity_local_margin=0))


def _ncc_by_loop(a: np.ndarray, b: np.ndarray, shift: int) -> float:
    """The definition, one shift at a time: each overlap correlated about its own mean."""
    h, w = a.shape
    best = -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            x = a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)].astype(np.float64)
            y = b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)].astype(np.float64)
            x, y = x - x.mean(), y - y.mean()
            den = float(np.sqrt((x * x).sum() * (y * y).sum()))
            if den > 1e-9:
                best = max(best, float((x * y).sum()) / den)
    return best


def test_ncc_at_every_shift_at_once_is_the_loop_over_shifts():
    rng = np.random.default_rng(0)
    for k in range(200):
        shift, h = int(rng.integers(0, 4)), int(rng.integers(8, 33))
        a = rng.normal(size=(h, 32)).astype(np.float32) + float(rng.normal())
        b = a + rng.normal(scale=rng.uniform(0.05, 3.0), size=a.shape).astype(np.float32)
        b = np.roll(b, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
        assert abs(ncc(a, b, shift) - _ncc_by_loop(a, b, shift)) < 1e-6, k
    a = rng.normal(size=(32, 32)).astype(np.float32)
    assert ncc(a, np.roll(a, 2, axis=1), 2) > 0.999            # a piece put back two pixels off is itself
    assert ncc(a, np.roll(a, 2, axis=1), 1) < 0.5
    flat = np.full((32, 32), 0.5, np.float32)
    assert ncc(flat, flat, 2) == -1.0 == _ncc_by_loop(flat, flat, 2)   # nothing varies: no correlation


def test_a_window_is_the_mean_of_its_frames_measures():
    rng = np.random.default_rng(1)
    rows = []
    for t in range(6):
        small = rng.uniform(0.2, 1.8, size=(32, 32, 3)).astype(np.float32)
        thumb = small.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
        emb = rng.normal(size=8).astype(np.float32)
        rows.append((float(t), emb / np.linalg.norm(emb), thumb, small))
    emb, look, detail = window_of(rows)
    assert np.allclose(look, np.mean([look_of(r[2]) for r in rows], axis=0), atol=1e-6)
    assert np.allclose(detail, np.mean([detail_of(r[3]) for r in rows], axis=0), atol=1e-6)
    assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-6


def test_is_other_decides_as_every_measure_would_though_it_stops_at_the_first():
    rng = np.random.default_rng(2)
    cfg = StatesConfig(identity_local=0.1)
    seen = set()
    for _ in range(300):
        base = rng.normal(size=(32, 32)).astype(np.float32)
        emb = rng.normal(size=8).astype(np.float32)
        look = rng.uniform(0.5, 1.5, size=(8, 8, 3)).astype(np.float32)
        before = (emb / np.linalg.norm(emb), look, base)
        emb_a = emb + rng.normal(scale=rng.uniform(0.0, 0.4), size=8).astype(np.float32)
        after = (emb_a / np.linalg.norm(emb_a), look + rng.normal(scale=rng.uniform(0, 0.2), size=look.shape),
                 base + rng.normal(scale=rng.uniform(0, 2.0), size=base.shape))
        cos, diff, corr, local = measures(before, after, cfg)
        eager = cos < cfg.identity_cos or diff > cfg.identity or corr < cfg.identity_detail or local > cfg.identity_local
        assert is_other(before, after, cfg) == eager
        seen.add(eager)
    assert seen == {True, False}
