"""The identity measures after a hand (edge.loop.identity): a small piece of another colour changes a few
blocks of the slot's look a lot (``identity_local``), which the mean over every block hides; the border
blocks, where a hand's shadow comes in, are left out."""
from __future__ import annotations

import numpy as np

from edge.config.states import StatesConfig
from edge.loop.identity import is_other, local_of, measures


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
