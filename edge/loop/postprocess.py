"""From one camera's logits to per-slot labels and per-class counts, every frame.

The steps, in order: softmax, top-k, threshold (a top-1 probability below ``min_score`` makes the
frame's label ``unknown``), temporal smoothing per slot over the last ``window`` frames, counts.

Smoothing is a vote with hysteresis: each frame casts one vote for its thresholded label; the
published label changes only when another label has strictly more votes in the window than the
one published now (so a label flips only once it dominates the window, and a tie never flips it).
A slot is ``stable`` when every one of the last ``window`` frames voted for its published label.

What each :class:`~edge.contracts.SlotResult` field means:

* ``label``: the smoothed label (a class name or ``unknown``);
* ``score``: the mean, over the frames in the window, of the probability given to ``label``
  (for ``unknown``: the mean top-1 probability, i.e. the confidence that fell short);
* ``topk``: this frame's top-k classes and probabilities, best first (before smoothing);
* ``raw_label``: this frame's thresholded label (before smoothing).

Counts (:attr:`FrameResult.counts`) hold every class name, ``empty`` included, plus ``unknown``,
each defaulting to 0, so they always sum to the number of slots; :attr:`FrameResult.items` is the
number of slots holding an item (neither ``empty`` nor ``unknown``).

Everything is vectorised over slots: one :meth:`Postprocessor.update` costs tens of microseconds
for 12 slots, most of it building the result objects.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from edge.contracts import FrameResult, SlotResult
from edge.errors import ConfigError, InferenceError

logger = logging.getLogger(__name__)

_NO_VOTE = -1  # history entry of a frame not seen yet (start, or after reset)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (each row of a slots x classes array).

    Args:
        logits: Array of shape ``(..., n_classes)``.

    Returns:
        Float array of the same shape whose rows sum to 1 (rows with a non-finite value give NaN).
    """
    x = np.asarray(logits, dtype=np.float64)
    # Subtracting the row maximum keeps exp() from overflowing on large logits; rows holding inf or
    # NaN come out NaN without a warning (the caller decides what they mean).
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.exp(x - x.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)


class Postprocessor:
    """Turns each frame's ``n_slots x n_classes`` logits into smoothed slot labels and counts.

    One instance per camera; it keeps the last ``window`` frames of every slot.

    Args:
        classes: Class names in the model's output order.
        slot_names: Slot names in the order of the rows of each frame's logits.
        min_score: Top-1 probability below which a frame's label is ``unknown_label``.
        window: How many frames the smoothing vote covers (1 disables smoothing).
        top_k: How many classes ``topk`` lists (clamped to the number of classes).
        unknown_label: Label for a frame whose best class is below ``min_score``.
        empty_label: The class meaning "nothing in the slot" (need not be among ``classes``).
        outputs_are: ``"logits"`` (softmax applied) or ``"probabilities"`` (used as they are).

    Raises:
        ConfigError: An argument is out of range or names collide (the message names it).
    """

    def __init__(self, classes: Sequence[str], slot_names: Sequence[str], *, min_score: float = 0.5,
                 window: int = 5, top_k: int = 3, unknown_label: str = "unknown", empty_label: str = "empty",
                 outputs_are: str = "logits") -> None:
        self.classes = tuple(str(c) for c in classes)
        self.slot_names = tuple(str(s) for s in slot_names)
        if not self.classes:
            raise ConfigError("postprocess: classes must not be empty")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"postprocess: classes has duplicates: {list(self.classes)}")
        if not self.slot_names:
            raise ConfigError("postprocess: slot_names must not be empty")
        if len(set(self.slot_names)) != len(self.slot_names):
            raise ConfigError(f"postprocess: slot_names has duplicates: {list(self.slot_names)}")
        if unknown_label in self.classes:
            raise ConfigError(f"postprocess: unknown_label '{unknown_label}' is also a class name")
        if not 0.0 <= float(min_score) <= 1.0:
            raise ConfigError(f"postprocess.min_score must be within [0, 1], got {min_score}")
        if int(window) != window or window < 1:
            raise ConfigError(f"postprocess.window must be an integer >= 1, got {window}")
        if int(top_k) != top_k or top_k < 1:
            raise ConfigError(f"postprocess.top_k must be an integer >= 1, got {top_k}")
        if outputs_are not in ("logits", "probabilities"):
            raise ConfigError(f"postprocess: outputs_are must be 'logits' or 'probabilities', got {outputs_are!r}")
        self.min_score = float(min_score)
        self.window = int(window)
        self.top_k = min(int(top_k), len(self.classes))
        self.unknown_label = unknown_label
        self.empty_label = empty_label
        self.outputs_are = outputs_are

        n_slots, n_classes = len(self.slot_names), len(self.classes)
        self._unknown = n_classes                      # label index of `unknown`
        self._labels = self.classes + (unknown_label,)  # index -> name
        self._not_item = np.zeros(n_classes + 1, dtype=bool)
        self._not_item[self._unknown] = True
        if empty_label in self.classes:
            self._not_item[self.classes.index(empty_label)] = True
        self._rows = np.arange(n_slots)
        # Ring buffers over the window: each frame's vote, and each frame's score for every label
        # (the class probabilities, then the top-1 probability in the `unknown` column).
        self._votes = np.full((self.window, n_slots), _NO_VOTE, dtype=np.int64)
        self._scores = np.zeros((self.window, n_slots, n_classes + 1), dtype=np.float64)
        self._pos = 0
        self._published = np.full(n_slots, _NO_VOTE, dtype=np.int64)
        self._warned_nonfinite = False

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label a slot can have, in counting order: the classes, then ``unknown``."""
        return self._labels

    def reset(self, slot_name: str | None = None) -> None:
        """Forget the history of one slot (or of all slots), e.g. after a camera reconnects.

        Raises:
            ConfigError: ``slot_name`` is not one of this camera's slots.
        """
        if slot_name is None:
            self._votes.fill(_NO_VOTE)
            self._scores.fill(0.0)
            self._published.fill(_NO_VOTE)
            return
        try:
            i = self.slot_names.index(slot_name)
        except ValueError:
            raise ConfigError(f"postprocess: no slot named '{slot_name}' (slots: {list(self.slot_names)})") from None
        self._votes[:, i] = _NO_VOTE
        self._scores[:, i, :] = 0.0
        self._published[i] = _NO_VOTE

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        arr = np.asarray(logits)
        expected = (len(self.slot_names), len(self.classes))
        if arr.ndim != 2 or arr.shape != expected:
            raise InferenceError(
                f"postprocess: logits have shape {arr.shape}, expected {expected} "
                f"({expected[0]} slots x {expected[1]} classes)")
        if not np.issubdtype(arr.dtype, np.number):
            raise InferenceError(f"postprocess: logits must be numeric, got dtype {arr.dtype}")
        probs = softmax(arr) if self.outputs_are == "logits" else np.asarray(arr, dtype=np.float64)
        bad = ~np.isfinite(probs).all(axis=1)
        if bad.any():
            # A runtime glitch on one frame should not stop the loop: such slots vote `unknown` with score 0.
            if not self._warned_nonfinite:
                logger.warning("postprocess: non-finite model outputs for slots %s; treated as unknown "
                               "(further occurrences logged at debug level)",
                               [self.slot_names[i] for i in np.flatnonzero(bad)])
                self._warned_nonfinite = True
            else:
                logger.debug("postprocess: non-finite outputs for %d slots", int(bad.sum()))
            probs = np.where(bad[:, None], 0.0, probs)
        return probs

    def update(self, logits: np.ndarray) -> FrameResult:
        """Add one frame and return every slot's smoothed state and the counts.

        Args:
            logits: ``n_slots x n_classes`` model outputs for this camera, rows in ``slot_names`` order.

        Returns:
            The :class:`FrameResult` for this frame.

        Raises:
            InferenceError: ``logits`` has the wrong shape or is not numeric (the message says what was expected).
        """
        probs = self._probabilities(logits)
        n_slots = probs.shape[0]
        rows = self._rows
        order = np.argsort(-probs, axis=1, kind="stable")[:, : self.top_k]
        top_scores = probs[rows[:, None], order]
        top1 = top_scores[:, 0]
        raw = np.where(top1 >= self.min_score, order[:, 0], self._unknown)
        if self.min_score == 0.0:
            raw = np.where(top1 > 0.0, raw, self._unknown)  # all-zero rows (non-finite outputs) stay unknown

        pos = self._pos
        self._votes[pos] = raw
        self._scores[pos, :, : self._unknown] = probs
        self._scores[pos, :, self._unknown] = top1
        self._pos = (pos + 1) % self.window

        n_labels = len(self._labels)
        valid = self._votes != _NO_VOTE                                   # window x slots
        flat = (rows[None, :] * n_labels + self._votes)[valid]
        votes = np.bincount(flat, minlength=n_slots * n_labels).reshape(n_slots, n_labels)
        best = votes.max(axis=1)
        # Among labels tied at the maximum prefer this frame's raw label, else the first in class order.
        tie_break = votes * 2
        tie_break[rows, raw] += 1
        challenger = tie_break.argmax(axis=1)
        current = self._published
        has_current = current != _NO_VOTE
        keep = has_current & (votes[rows, np.where(has_current, current, 0)] >= best)
        published = np.where(keep, current, challenger)
        self._published = published

        n_valid = valid.sum(axis=0)
        score_sum = (self._scores[:, rows, published] * valid).sum(axis=0)
        score = score_sum / np.maximum(n_valid, 1)
        stable = votes[rows, published] == self.window

        counts_arr = np.bincount(published, minlength=n_labels)
        counts = dict(zip(self._labels, counts_arr.tolist()))
        items = int(counts_arr[~self._not_item].sum())

        labels = self._labels
        classes = self.classes
        order_l, top_l = order.tolist(), top_scores.tolist()
        slots = [
            SlotResult(name=name, label=labels[p], score=s,
                       topk=[(classes[c], v) for c, v in zip(oc, ov)], stable=st, raw_label=labels[r])
            for name, p, s, oc, ov, st, r in zip(self.slot_names, published.tolist(), score.tolist(),
                                                 order_l, top_l, stable.tolist(), raw.tolist())
        ]
        return FrameResult(slots=slots, counts=counts, items=items)
