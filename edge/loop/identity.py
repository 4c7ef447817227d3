"""Is the piece in a slot after a hand the one that lay there before? The measures the slot states compare
windows of still frames with (:mod:`edge.loop.slot_states`): the mean embedding, a coarse colour look, and
the grey detail at its best small shift."""
from __future__ import annotations

import numpy as np


def look_of(thumb: np.ndarray) -> np.ndarray:
    """A 16 x 16 colour thumbnail as 8 x 8 block means: a piece put back a few pixels off looks the same,
    one of another colour does not."""
    h, w, c = thumb.shape
    return thumb[: h - h % 2, : w - w % 2].reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def detail_of(small: np.ndarray) -> np.ndarray:
    """A 32 x 32 colour thumbnail as its grey, zero mean: the piece's shape and its place in the slot."""
    grey = small.mean(axis=2)
    return grey - grey.mean()


def ncc(a: np.ndarray, b: np.ndarray, shift: int) -> float:
    """The best normalised correlation of two zero-mean grey thumbnails over shifts of up to ``shift`` pixels
    each way: a piece put back a pixel or two off matches itself."""
    h, w = a.shape
    best = -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            x = a[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            y = b[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            x, y = x - x.mean(), y - y.mean()
            den = float(np.sqrt((x * x).sum() * (y * y).sum()))
            if den > 1e-9:
                best = max(best, float((x * y).sum()) / den)
    return best


def mean_of(rows) -> np.ndarray:
    m = np.mean(np.stack(list(rows)), axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-12) if m.ndim == 1 else m


def window_of(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean embedding, mean look, mean detail) of history rows ``(time, embedding, look, detail)``."""
    return mean_of(r[1] for r in rows), mean_of(r[2] for r in rows), mean_of(r[3] for r in rows)


def local_of(look: np.ndarray, look_a: np.ndarray, margin: int) -> float:
    """The largest difference of one block of two looks (mean absolute over its colours), leaving out ``margin``
    blocks at each edge: a small piece of another colour on a large tray changes a few blocks a lot and the
    mean of all of them little; a hand's shadow or a sleeve's edge comes in at the border."""
    d = np.abs(look_a - look).mean(axis=-1)
    if margin > 0 and min(d.shape) > 2 * margin:
        d = d[margin:-margin, margin:-margin]
    return float(d.max())


def measures(before: tuple, after: tuple, cfg) -> tuple[float, float, float, float]:
    """(embedding cosine, colour look difference, detail correlation, largest block difference) of two windows
    ``(mean embedding, mean look, mean detail)``, with ``cfg`` (:class:`~edge.config.states.StatesConfig`)'s
    shift and margin; a measure that is off is reported as passing (1.0 correlation, 0.0 local)."""
    (emb, look, detail), (emb_a, look_a, detail_a) = before, after
    corr = ncc(detail, detail_a, cfg.identity_shift) if cfg.identity_detail > 0 else 1.0
    local = local_of(look, look_a, cfg.identity_local_margin) if cfg.identity_local > 0 else 0.0
    return float(emb_a @ emb), float(np.abs(look_a - look).mean()), corr, local


def is_other(before: tuple, after: tuple, cfg) -> bool:
    """Another piece by any of the measures that are on (:func:`measures`)."""
    cos, diff, corr, local = measures(before, after, cfg)
    return cos < cfg.identity_cos or (cfg.identity > 0 and diff > cfg.identity) or corr < cfg.identity_detail \
        or (cfg.identity_local > 0 and local > cfg.identity_local)
