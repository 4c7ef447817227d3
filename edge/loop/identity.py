"""Is the piece in a slot after a hand the one that lay there before? The measures the slot states compare
windows of still frames with (:mod:`edge.loop.slot_states`): the mean embedding, a coarse colour look, and
the grey detail at its best small shift; and the check itself (:func:`check_identity`) on a slot's track."""
from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def look_of(thumb: np.ndarray) -> np.ndarray:
    """A 16 x 16 colour thumbnail as 8 x 8 block means: a piece put back a few pixels off looks the same,
    one of another colour does not."""
    h, w, c = thumb.shape
    return thumb[: h - h % 2, : w - w % 2].reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def detail_of(small: np.ndarray) -> np.ndarray:
    """A 32 x 32 colour thumbnail as its grey, zero mean: the piece's shape and its place in the slot."""
    grey = small.mean(axis=2)
    return grey - grey.mean()


@functools.lru_cache(maxsize=8)
def _overlaps(h: int, w: int, shift: int) -> tuple[tuple, tuple, np.ndarray]:
    """For every shift (dy, dx) of up to ``shift`` each way, as (2 shift + 1)-square arrays: the rows and
    columns of ``a`` and of ``b`` that overlap, ``(r0, r1, c0, c1)`` each, and the overlap's size."""
    lags = np.arange(-shift, shift + 1)
    dy, dx = np.meshgrid(lags, lags, indexing="ij")
    in_a = (np.maximum(0, dy), h + np.minimum(0, dy), np.maximum(0, dx), w + np.minimum(0, dx))
    in_b = (np.maximum(0, -dy), h + np.minimum(0, -dy), np.maximum(0, -dx), w + np.minimum(0, -dx))
    return in_a, in_b, (in_a[1] - in_a[0]) * (in_a[3] - in_a[2])


def _rect_sums(x: np.ndarray, r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Sums of ``x`` over many rectangles at once, from its integral image."""
    total = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    np.cumsum(x, 0, out=total[1:, 1:])
    np.cumsum(total[1:, 1:], 1, out=total[1:, 1:])
    return total[r1, c1] - total[r0, c1] - total[r1, c0] + total[r0, c0]


def ncc(a: np.ndarray, b: np.ndarray, shift: int) -> float:
    """The best normalised correlation of two grey thumbnails over shifts of up to ``shift`` pixels each way
    (each shift correlates the parts that overlap, each about its own mean): a piece put back a pixel or two
    off matches itself. -1 where no overlap varies.

    Every shift at once, in float64: the overlaps' sums and sums of squares from integral images and their
    cross sums from one product over the shifted views (the slot states run this for every slot after a hand,
    every frame, so a loop over shifts cost more than the model's inference)."""
    h, w = a.shape
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    in_a, in_b, n = _overlaps(h, w, shift)
    sx, sxx = _rect_sums(a, *in_a), _rect_sums(a * a, *in_a)
    sy, syy = _rect_sums(b, *in_b), _rect_sums(b * b, *in_b)
    views = sliding_window_view(np.pad(b, shift), (h, w))             # views[u, v] = b moved by (shift-u, shift-v)
    sxy = np.tensordot(views, a, axes=([2, 3], [0, 1]))[::-1, ::-1]  # [dy + shift, dx + shift]
    den = (sxx - sx * sx / n) * (syy - sy * sy / n)
    varies = den > 1e-18
    if not varies.any():
        return -1.0
    return float(max(-1.0, ((sxy - sx * sy / n)[varies] / np.sqrt(den[varies])).max()))


def mean_of(rows) -> np.ndarray:
    m = np.mean(np.stack(list(rows)), axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-12) if m.ndim == 1 else m


def window_of(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean embedding, mean look, mean detail) of history rows ``(time, embedding, 16 x 16 thumbnail, 32 x 32
    thumbnail)``. The look and the detail are linear in the thumbnail, so the mean of the frames' looks is the
    look of their mean thumbnail: computed here, once per window, rather than for every still frame."""
    rows = list(rows)
    n = float(len(rows))
    return (mean_of(r[1] for r in rows), look_of(sum(r[2] for r in rows) / n),   # a few small arrays: a sum
            detail_of(sum(r[3] for r in rows) / n))                                  # beats a stack and a mean


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
    """Another piece by any of the measures that are on (:func:`measures`), the cheap ones first: the detail's
    correlation over shifts is computed only when the embedding and the colour look have not decided."""
    (emb, look, detail), (emb_a, look_a, detail_a) = before, after
    if float(emb_a @ emb) < cfg.identity_cos:
        return True
    if cfg.identity > 0 and float(np.abs(look_a - look).mean()) > cfg.identity:
        return True
    if cfg.identity_local > 0 and local_of(look, look_a, cfg.identity_local_margin) > cfg.identity_local:
        return True
    return cfg.identity_detail > 0 and ncc(detail, detail_a, cfg.identity_shift) < cfg.identity_detail


def window_since(history, start: float, cfg) -> tuple | None:
    """(mean embedding, look, detail) of the last ``enrol_frames`` history rows from ``start`` on (``None`` with
    fewer than two)."""
    rows = [r for r in history if r[0] >= start]
    return window_of(rows[-cfg.enrol_frames:]) if len(rows) >= 2 else None


def windows_before(history, end: float, cfg) -> list[tuple]:
    """A slot's still frames up to ``end`` as consecutive windows of ``enrol_frames``, latest first (up to
    ``before_windows``; a last short one of two or more frames counts)."""
    rows = [r for r in history if r[0] <= end]
    n, out = cfg.enrol_frames, []
    while len(rows) >= 2 and len(out) < cfg.before_windows:
        out.append(window_of(rows[-n:]))
        rows = rows[:-n]
    return out


def check_identity(tr, t: float, cfg, empty_label: str) -> None:
    """After a hand, is the piece in the slot the one that lay there before? Sets the track's ``other``.

    Its mean embedding over ``enrol_frames`` still frames against the mean before the hand came
    (``identity_cos``), and its colour look (``identity``): the model's features tell categories apart better
    than two pieces of one category, and averaging frames takes the codec's flicker out of both. The frames next
    to the hand (``identity_guard_s``: its shadow, a sleeve's edge) are left out. The same piece ends the check;
    another keeps the slot ``changed`` (or ``empty``) until a hand puts the first one back or the slot is
    enrolled.

    Args:
        tr: the slot's track (:class:`edge.loop.slot_states._Track`): its history, ``before``, ``anchor``.
        t: this frame's time.
        cfg: the :class:`~edge.config.states.StatesConfig`.
        empty_label: the class meaning nothing is in the slot.
    """
    settled = tr.still_since + cfg.identity_guard_s
    rows = [r for r in tr.history if settled <= r[0] <= t]       # the still frames after the hand
    n = cfg.enrol_frames
    if len(rows) < n or len(tr.recent) < min(n, len(tr.history)):
        return
    after = window_of(rows[-n:])
    # Another piece only when what lies there now differs from every window before the hand (a shadow or a
    # sleeve that came ahead of the hand, unseen as motion, spoils only the last of them) and from the piece
    # as last verified (glare drifting over the slot for seconds before the hand spoils them all).
    anchor = [tr.anchor] if cfg.identity_anchor and tr.anchor is not None else []
    other = all(is_other(before, after, cfg) for before in [*tr.before, *anchor])
    if other and cfg.identity_settle and tr.label != empty_label:
        # ... and only once it has settled: the window before this one (after the hand too) is the same
        # piece. Glare drifting over the slot, too slow to be motion, changes from window to window; until
        # it has passed nothing is decided. An empty slot is decided at once (a smash-and-grab's slots).
        if len(rows) < 2 * n:
            return
        if is_other(window_of(rows[-2 * n:-n]), after, cfg):
            tr.other = None
            return
    tr.other = other
    if not tr.other:
        tr.before, tr.anchor = None, after
