"""The ``states`` section of the device config: how each slot knows its own piece (enrolment, states)."""
from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field

from edge.validation import Strict


class StatesConfig(Strict):
    """Slot states: each slot compares what it sees with the piece recorded at enrolment.

    The defaults were set on the store-day benchmark's development days (``bench/store_day.py``), not on
    the days it reports.
    """

    # and Strict's: no unknown field, frozen; no bool read as a number, no number given as a string.
    model_config = ConfigDict(strict=True)

    enabled: bool = Field(True, description="Give every slot a state (needs a model with an embedding output; "
                                            "without one every slot is `unenrolled` and the device says why).")
    state_dir: Path | None = Field(None, strict=False,
                                   description="Where enrolments are kept; default $STATE_DIRECTORY (systemd), "
                                               "else `state/` beside the config file.")
    auto_enrol: bool = Field(True, description="A slot with no valid reference enrols itself once it has been still "
                                               "with a piece in it (first start, or after a model or slot-map change).")
    still_s: float = Field(1.2, gt=0, le=60, description="Seconds without motion before a slot's state is decided "
                                                         "(a hand or motion makes it `occluded` until then).")
    enrol_frames: int = Field(6, ge=2, le=100, description="Still frames averaged into a slot's reference.")
    enrol_wait_s: float = Field(3.0, ge=0, le=30, description="An enrolment request for a slot that has just become "
                                                              "still waits up to this long (wall seconds) for "
                                                              "`enrol_frames` still frames past `identity_guard_s`, so "
                                                              "its reference holds no hand's shadow (0: enrol at once "
                                                              "from the still frames there are).")
    motion: float = Field(0.07, gt=0, le=2, description="Change of a slot's tiny grey thumbnail between two frames "
                                                        "(mean absolute difference, light's gain removed) that "
                                                        "counts as motion ...")
    motion_embedding: float = Field(0.02, ge=0, le=2, description="... together with a change of its embedding "
                                                                 "(1 - cosine between two frames) of at least this.")
    spread_k: float = Field(6.0, gt=0, le=100, description="A slot's threshold lies this many of its enrolment "
                                                           "spreads below its reference similarity ...")
    min_margin: float = Field(0.12, ge=0, le=1, description="... but at least this far below it (light, glare and "
                                                            "a nudged camera move the embedding a little) ...")
    max_margin: float = Field(0.35, gt=0, le=2, description="... and at most this far.")
    follow_s: float = Field(10.0, ge=0, le=3600, description="Time constant (seconds) with which a present "
                                                            "piece's reference follows slow changes of light; "
                                                            "0 keeps the enrolled reference as it is.")
    identity_cos: float = Field(0.98, ge=0, le=1, description="After a hand, the piece there is another one when "
                                                              "its mean embedding over `enrol_frames` still frames "
                                                              "has a cosine below this to the mean before the hand "
                                                              "(0: off) ...")
    identity: float = Field(0.25, ge=0, le=2, description="... or when its colour look (8x8 blocks, light's gain "
                                                          "divided out) differs from the look before the hand by more "
                                                          "than this (mean absolute difference; 0: off).")
    identity_detail: float = Field(0.75, ge=0, le=1, description="... or when its grey detail (32x32, each window's "
                                                                 "mean) correlates below this with the detail before "
                                                                 "the hand at its best shift (0: off).")
    identity_local: float = Field(0.0, ge=0, le=2, description="... or when one block of its colour look (of the "
                                                               "8x8, inside `identity_local_margin`) differs by more "
                                                               "than this: a small piece of another colour on a large "
                                                               "tray (0: off).")
    identity_local_margin: int = Field(1, ge=0, le=3, description="Blocks at each edge of the look left out of "
                                                                  "`identity_local`: a hand's shadow, a sleeve's edge.")
    identity_shift: int = Field(2, ge=0, le=8, description="Pixels (of 32) the detail may shift each way: a piece put "
                                                           "back a little off is the same piece.")
    identity_guard_s: float = Field(0.6, ge=0, le=10, description="Seconds next to a hand (before it came, after "
                                                                  "the slot is still again) left out of that check: "
                                                                  "its shadow, a sleeve's edge.")
    before_windows: int = Field(3, ge=1, le=10, description="Windows of `enrol_frames` still frames before the hand "
                                                            "that piece is compared with: another piece differs from "
                                                            "every one of them.")
    identity_anchor: bool = Field(True, description="... and with the piece as it was last verified (at enrolment, or "
                                                    "the same piece after an earlier hand): glare or a shadow over "
                                                    "the slot just before a hand spoils every window before it, "
                                                    "not that one.")
    identity_recheck: bool = Field(True, description="While the slot stays still, that check is made again on "
                                                     "its latest still frames, so a shadow or a sleeve at the "
                                                     "hand's edge cannot latch `changed`.")
    change_needs_hand: bool = Field(True, description="A present slot becomes `changed` only through a hand: "
                                                      "after one, when the piece there is another (the identity "
                                                      "check); its embedding drifting from the reference without "
                                                      "a hand (light, glare, the camera nudged) keeps it present.")
    identity_settle: bool = Field(False, description="Another piece is decided only once what lies there has "
                                                    "settled: its latest window is the same piece as the window "
                                                    "before it (glare or a shadow still drifting over the slot "
                                                    "keeps it `occluded`).")
    label_window_s: float = Field(4.0, ge=0, le=60, description="A decided slot (present, changed or empty) "
                                                                "flips between a piece and none only when most of "
                                                                "its still frames' labels over this many seconds say "
                                                                "so: nothing leaves or enters a still slot without a "
                                                                "hand, so a faint piece whose label flickers keeps its "
                                                                "state (0: every frame's label decides).")
    confirm_frames: int = Field(3, ge=1, le=100, description="Frames a decided state must hold before it is "
                                                             "published (occluded is published at once).")
