"""Incidents from slot states, driven by hand with a fake clock: missing after the grace, lift-and-return,
hand passes, swaps, smash-and-grab, hints, planogram states, unenrolled slots, schema 1 fallback."""
from __future__ import annotations

import datetime as dt

from kiosk.config import parse_config
from kiosk.engine import Engine
from kiosk.slot_states import state_condition
from tests.helpers import labels_message as labels

from .feeds import heartbeat
from .states_feeds import SEEN, state_labels, states_config

T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc).timestamp()   # a Wednesday, noon UTC
R0C1 = ("case-01", "cam0", "r0c1")


def engine(tmp_path, **policies):
    return Engine(parse_config(states_config(tmp_path, policies={"empty_grace_s": 60, **policies})), now=T0)


class Day:
    """Feeds states to an engine second by second and collects what opened and resolved."""

    def __init__(self, e: Engine) -> None:
        self.e, self.seq, self.events = e, 0, []

    def at(self, t: float, states: dict | None = None, seen: dict | None = None, **kw):
        ch = self.e.on_labels(state_labels(states, seen, seq=self.seq, **kw), T0 + t)
        ch.extend(self.e.on_heartbeat(heartbeat({"cam0": self.seq}), T0 + t))
        ch.extend(self.e.tick(T0 + t))
        self.seq += 1
        self.events += [(ev, i.kind, i.slot) for ev, i in ch.incidents if i.kind != "camera"]
        return ch

    def opened(self):
        return [(k, s) for ev, k, s in self.events if ev == "opened"]


def test_slot_words_are_the_page_words_with_the_name(tmp_path):
    e = engine(tmp_path)
    assert e.words(("case-01", "cam0"), "r0c1") == "top row, second from left (r0c1)"
    assert e.words(("case-01", "cam0"), "r1c2") == "bottom row, rightmost (r1c2)"
    assert e.words(("case-01", "cam0"), "left") == "slot left"


def test_missing_opens_after_the_grace_counted_from_the_first_frame_away(tmp_path):
    d = Day(engine(tmp_path))
    d.at(0)
    d.at(1, {"r0c1": "occluded"})                  # the hand reaches in: away from here
    d.at(5, {"r0c1": "empty"})                     # still again, and empty
    d.at(60, {"r0c1": "empty"})
    assert d.opened() == []                        # 59 s away: within the grace
    d.at(61, {"r0c1": "empty"})
    assert d.opened() == [("missing", "r0c1")]
    inc = d.e.open[("slot", *R0C1)]
    assert "the ring of Window: top row, second from left (r0c1) is missing: empty for 60 s" in inc.reason
    assert inc.evidence["state"] == "empty" and inc.evidence["since"] == T0 + 1
    assert inc.evidence["enrolment"]["id"] == "0123456789ab"
    d.at(70, {"r0c1": "occluded"})                 # a hand over the empty slot decides nothing
    assert ("slot", *R0C1) in d.e.open
    d.at(72)
    assert ("resolved", "missing", "r0c1") in d.events and not d.e.open


def test_lift_and_return_within_the_grace_and_hand_passes_never_alarm(tmp_path):
    d = Day(engine(tmp_path))
    d.at(0)
    for t in range(1, 200, 3):                     # hand passes over every slot, all day
        d.at(t, {n: "occluded" for n in ("r0c0", "r0c1", "r0c2", "r1c0")})
        d.at(t + 1)
    d.at(300, {"r0c0": "occluded"})                # shown to a customer and put back after 55 s
    d.at(302, {"r0c0": "empty"})
    d.at(354, {"r0c0": "empty"})
    d.at(355, {"r0c0": "occluded"})
    d.at(356)
    d.at(500)
    assert d.events == []


def test_a_hand_over_an_emptied_slot_does_not_put_its_alarm_off(tmp_path):
    d = Day(engine(tmp_path))                      # a grace of 60 s
    d.at(0)
    d.at(1, {"r0c1": "occluded"})                  # the thief's hand
    d.at(5, {"r0c1": "empty"})
    d.at(56, {"r0c1": "occluded"})                 # a hand before the last 2 s decides nothing (putting it back?)
    assert d.e.slot_dict(R0C1)["cond"] == "occluded"
    d.at(57, {"r0c1": "empty"})
    d.at(59, {"r0c1": "occluded"})                 # a customer's hand passes over the empty slot ...
    assert d.e.slot_dict(R0C1)["cond"] == "missing"
    d.at(61, {"r0c1": "occluded"})                 # ... when the grace runs out: the alarm is not put off
    assert d.opened() == [("missing", "r0c1")]
    assert d.e.open[("slot", *R0C1)].evidence["since"] == T0 + 1
    d.at(64)                                       # the piece seen again ends it
    assert ("resolved", "missing", "r0c1") in d.events


def test_a_hand_over_a_slot_never_seen_empty_decides_nothing(tmp_path):
    d = Day(engine(tmp_path))
    d.at(0)
    d.at(1, {"r0c1": "occluded"})                  # a long hand, never seen empty: occluded, no alarm
    d.at(100, {"r0c1": "occluded"})
    assert d.opened() == [] and d.e.slot_dict(R0C1)["cond"] == "occluded"


def test_tick_opens_missing_when_the_grace_runs_out_without_messages(tmp_path):
    d = Day(engine(tmp_path))
    d.at(0)
    d.at(1, {"r0c0": "empty"})
    assert not [i for _, i in d.e.tick(T0 + 60).incidents if i.kind != "camera"]
    inc, = [i for ev, i in d.e.tick(T0 + 61).incidents if ev == "opened" and i.kind != "camera"]
    assert inc.kind == "missing" and inc.slot == "r0c0"


def test_swapped_once_changed_for_swap_confirm_s(tmp_path):
    d = Day(engine(tmp_path, swap_confirm_s=3))
    d.at(0)
    d.at(1, {"r0c1": "occluded"})
    d.at(2, {"r0c1": "changed"})
    d.at(3, {"r0c1": "present"})                   # the run is broken: counts again
    d.at(4, {"r0c1": "changed"})
    d.at(5, {"r0c1": "occluded"})                  # a hand over it decides nothing: the count goes on
    d.at(6, {"r0c1": "changed"})
    assert d.opened() == []
    d.at(7, {"r0c1": "changed"}, {"r0c1": "ring"})
    assert d.opened() == [("swapped", "r0c1")]
    inc = d.e.open[("slot", *R0C1)]
    assert inc.reason.startswith("another piece is in Window: top row, second from left (r0c1)")
    assert "similarity to its reference 0.41" in inc.reason
    d.at(8)                                        # the right piece is back
    assert ("resolved", "swapped", "r0c1") in d.events


def test_the_swap_count_starts_at_the_first_changed_never_at_the_hand_before_it(tmp_path):
    """A slot occluded for 20 s (a hand, glare drifting over it) that then reads ``changed`` for a moment has
    not been changed for ``swap_confirm_s``: nothing opens until it has."""
    d = Day(engine(tmp_path, swap_confirm_s=3))
    d.at(0)
    for t in range(1, 21):
        d.at(t, {"r0c1": "occluded"})
    d.at(21, {"r0c1": "changed"})
    d.at(23, {"r0c1": "changed"})
    assert d.opened() == []
    d.at(24, {"r0c1": "changed"})
    assert d.opened() == [("swapped", "r0c1")]


def test_swapped_resolves_when_the_slot_is_re_enrolled(tmp_path):
    d = Day(engine(tmp_path, swap_confirm_s=0))
    d.at(0)
    d.at(1, {"r0c1": "changed"})
    inc = d.e.open[("slot", *R0C1)]
    ch = d.e.on_enrolled(("case-01", "cam0"), ["r0c1"], "mia", T0 + 2)
    assert ch.incidents == [("resolved", inc)] and "re-enrolled by mia" in inc.evidence["resolution"]


def test_a_re_enrolled_slot_starts_afresh_the_message_in_flight_opens_nothing(tmp_path):
    d = Day(engine(tmp_path, swap_confirm_s=3))
    d.at(0)
    d.at(1, {"r0c1": "changed"})
    d.at(5, {"r0c1": "changed"})
    assert d.opened() == [("swapped", "r0c1")]
    d.e.on_enrolled(("case-01", "cam0"), ["r0c1"], "mia", T0 + 6)
    d.at(6, {"r0c1": "changed"})                  # sent before the device took the new reference
    d.e.tick(T0 + 7)
    assert d.opened() == [("swapped", "r0c1")]
    d.at(8)                                        # present from now on
    assert d.opened() == [("swapped", "r0c1")]


def test_a_missing_piece_stays_missing_when_another_is_put_in_its_place_until_enrolled(tmp_path):
    d = Day(engine(tmp_path, swap_confirm_s=0, empty_grace_s=0))
    d.at(0)
    d.at(1, {"r0c1": "empty"})
    d.at(2, {"r0c1": "changed"})                   # a restock, not enrolled yet
    assert d.events == [("opened", "missing", "r0c1")]
    d.e.on_enrolled(("case-01", "cam0"), ["r0c1"], "mia", T0 + 3)
    assert ("slot", *R0C1) not in d.e.open


def test_a_swap_then_a_taken_piece_is_one_incident_changing_kind(tmp_path):
    d = Day(engine(tmp_path, swap_confirm_s=0, empty_grace_s=0))
    d.at(0)
    d.at(1, {"r0c1": "changed"})
    d.at(2, {"r0c1": "empty"})
    assert d.events == [("opened", "swapped", "r0c1"), ("updated", "missing", "r0c1")]


def test_smash_and_grab_counts_removals_by_their_first_frame_away(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=600, smash_slots_at_once=True))   # burst_slots 2 within 10 s
    d.at(0)
    d.at(1, {"r0c0": "occluded", "r0c1": "occluded", "r0c2": "occluded"})
    d.at(5, {"r0c0": "empty", "r0c1": "empty", "r0c2": "occluded"})
    assert d.opened() == []
    d.at(14, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})   # decided late, taken at 1 s
    assert d.opened() == []                                         # ... and empty for less than smash_hold_s
    d.at(16, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    assert sorted(d.opened()) == [("missing", "r0c0"), ("missing", "r0c1"), ("missing", "r0c2"), ("smash", None)]
    smash = d.e.open[("smash", "case-01", "cam0")]
    assert "3 slots of Window emptied within 10 s" in smash.reason and "top row, rightmost (r0c2)" in smash.reason
    d.at(30)
    assert ("resolved", "smash", None) in d.events and not d.e.open


def test_an_arm_resting_across_two_slots_beside_a_theft_is_no_smash(tmp_path):
    """A fresh store day's false smash (s200): a piece stolen, and 3 s later an arm reaching across the case to
    swap a piece rested still on two other slots, which read ``empty`` for 0.4 and 1.2 s. A slot counts toward a
    smash once it has read empty for ``smash_hold_s`` (2 s); with 0 the old rule alarms."""
    for hold, smash in ((2.0, False), (0.0, True)):
        d = Day(engine(tmp_path / str(hold), empty_grace_s=600, smash_hold_s=hold))
        d.at(0)
        d.at(1, {"r0c0": "occluded"})
        d.at(3, {"r0c0": "empty"})                                       # stolen
        d.at(4, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "occluded"})
        d.at(6, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})     # under the resting arm
        d.at(7, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "empty"})
        d.at(7.5, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "occluded"})
        d.at(12, {"r0c0": "empty"})                                      # the arm gone: both pieces there
        d.at(20, {"r0c0": "empty"})
        assert (("smash", None) in d.opened()) is smash


def test_a_hand_over_a_smashed_slot_that_already_counted_does_not_put_the_smash_off(tmp_path):
    """A fresh store day's late smash (drawn s202): three slots emptied in 4 s; a customer's hand then passed over
    the second one, 2.4 s after it read empty, and kept it ``occluded`` for 7 s. The third slot's hold ended under
    that hand: the alarm waited for the hand and came 14 s after the first removal. A slot that has counted keeps
    counting while a hand is over it; one that read empty for less than the hold does not (the resting arm)."""
    d = Day(engine(tmp_path, empty_grace_s=600))                    # burst_slots 2 within 10 s, hold 2 s
    d.at(0)
    d.at(1, {"r0c0": "occluded", "r0c1": "occluded", "r0c2": "occluded"})
    d.at(4.4, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "occluded"})
    d.at(4.8, {"r0c0": "empty", "r0c1": "empty", "r0c2": "occluded"})
    d.at(6.8, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})   # r0c1 has counted (2 s empty)
    d.at(7.2, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "empty"})   # a customer's hand over it
    assert d.opened() == []
    d.at(8.8, {"r0c0": "empty", "r0c1": "occluded", "r0c2": "empty"})   # r0c2's hold ends under that hand
    assert d.opened() == [("smash", None)]


def test_a_smash_alarms_at_once_and_its_slots_keep_their_grace_so_a_piece_shown_or_sold_opens_nothing(tmp_path):
    """A theft, a piece lifted out to be shown and a sale within 10 s: by the rule's own definition a
    smash-and-grab, and its alarm names the three slots at once. Each slot then keeps its grace: the shown piece
    is back and the sold one marked sold before it runs out, so only the stolen piece's slot opens ``missing``
    (the held-out store day's false incidents came so when every slot of the alarm opened at once)."""
    d = Day(engine(tmp_path, empty_grace_s=30))
    d.at(0)
    d.at(1, {"r0c0": "empty"})                                         # stolen
    d.at(4, {"r0c0": "empty", "r0c1": "empty"})                        # lifted to be shown
    d.at(8, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})       # sold
    d.at(10, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})      # ... all three empty for 2 s
    assert d.opened() == [("smash", None)]
    smash = d.e.open[("smash", "case-01", "cam0")]
    assert "r0c0" in smash.reason and "r0c1" in smash.reason and "r0c2" in smash.reason
    d.e.set_expected(("case-01", "cam0", "r0c2"), "sold", T0 + 12)        # the sale is marked sold
    d.at(20, {"r0c0": "empty", "r0c2": "empty"})                       # the shown piece is back
    d.at(30, {"r0c0": "empty", "r0c2": "empty"})
    assert d.opened() == [("smash", None)]
    d.at(31, {"r0c0": "empty", "r0c2": "empty"})
    assert ("missing", "r0c0") in d.opened()


def test_a_hand_over_a_smashed_case_neither_ends_its_alarm_nor_raises_a_second(tmp_path):
    """A hand over the emptied slots of a smash (a guard, a customer) makes them ``occluded``: that decides
    nothing, so the alarm stays open and no second smash incident opens when they read empty again (a fresh store
    day's false incident: its smash was resolved by a hand pass 14 s after it opened, and opened again). The
    case seen whole ends it."""
    d = Day(engine(tmp_path, empty_grace_s=600))
    d.at(0)
    d.at(1, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    d.at(3, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    assert d.opened() == [("smash", None)]
    d.at(15, {"r0c0": "occluded", "r0c1": "occluded", "r0c2": "occluded"})
    assert ("smash", "case-01", "cam0") in d.e.open and ("resolved", "smash", None) not in d.events
    d.at(20, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    assert d.opened() == [("smash", None)]
    d.at(40)
    assert ("resolved", "smash", None) in d.events and not d.e.open


def test_during_a_smash_alarm_the_other_slots_keep_their_grace(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=30))
    d.at(0)
    d.at(1, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty", "r1c0": "present"})
    d.at(3, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty", "r1c0": "present"})
    assert ("smash", None) in d.opened()
    d.at(5, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty", "r1c0": "empty"})   # a hand resting there
    assert ("missing", "r1c0") not in d.opened()
    d.at(8, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})                    # the hand is gone
    d.e.tick(T0 + 40)
    assert ("missing", "r1c0") not in d.opened()


def test_a_smash_slot_restocked_and_emptied_again_gets_its_grace(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=30, smash_slots_at_once=True))
    d.at(0)
    d.at(1, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    d.at(3, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    assert ("smash", None) in d.opened() and ("missing", "r0c1") in d.opened()
    d.e.on_enrolled(("case-01", "cam0"), ["r0c1"], "manager", T0 + 100)   # restocked and enrolled ...
    d.at(101, {"r0c0": "empty", "r0c2": "empty"})
    d.events.clear()
    d.at(200, {"r0c0": "empty", "r0c2": "empty", "r0c1": "occluded"})     # ... later sold: taken out
    d.at(203, {"r0c0": "empty", "r0c2": "empty", "r0c1": "empty"})
    assert ("smash", "case-01", "cam0") in d.e.open
    assert ("missing", "r0c1") not in d.opened()                            # the smash alarm is still open
    d.at(231, {"r0c0": "empty", "r0c2": "empty", "r0c1": "empty"})
    assert ("missing", "r0c1") in d.opened()                                # its own grace, from 200


def test_hand_passes_and_slow_removals_are_no_smash(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=600))
    d.at(0)
    d.at(1, {"r0c0": "occluded", "r0c1": "occluded", "r0c2": "occluded", "r1c0": "occluded"})
    d.at(2, {"r0c0": "empty"})                     # one piece taken, three hands pass on
    d.at(30, {"r0c0": "empty", "r0c1": "occluded"})
    d.at(31, {"r0c0": "empty", "r0c1": "empty"})   # another piece, 30 s later
    d.at(60, {"r0c0": "empty", "r0c1": "empty", "r0c2": "empty"})
    assert d.opened() == []


def test_a_category_that_differs_is_a_hint_unless_category_incidents(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=0))
    ch = d.at(0, seen={"r0c1": "bracelet"})
    cell, = [c for c in ch.slots if c["slot"] == "r0c1"]
    assert cell["cond"] == "ok" and cell["hint"] == "reads as bracelet; the planogram says ring" and not d.e.open
    d2 = Day(engine(tmp_path, empty_grace_s=0, category_incidents=True))
    d2.at(0, seen={"r0c1": "bracelet"})
    assert d2.opened() == [("wrong", "r0c1")]


def test_planogram_states_expect_nothing_and_marking_sold_stops_the_incident(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=0, swap_confirm_s=0))
    d.at(0, {"r1c2": "empty"})
    d.at(1, {"r1c2": "changed"}, {"r1c2": "ring"})   # a piece laid where the planogram says sold
    assert d.events == [] and d.e.slot_dict(("case-01", "cam0", "r1c2"))["cond"] == "extra"
    assert "a piece (ring) is here; the planogram says sold" == d.e.slot_dict(("case-01", "cam0", "r1c2"))["hint"]
    d.at(2, {"r0c0": "empty"})
    assert d.opened() == [("missing", "r0c0")]
    _, ch = d.e.set_expected(("case-01", "cam0", "r0c0"), "sold", T0 + 3)   # the piece was sold
    assert [(ev, i.kind) for ev, i in ch.incidents] == [("resolved", "missing")]
    d.at(4, {"r0c0": "empty"})
    d.at(999, {"r0c0": "empty"})
    assert d.opened() == [("missing", "r0c0")]


def test_unenrolled_and_occluded_never_open_anything(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=0, swap_confirm_s=0))
    d.at(0, {"r0c0": "unenrolled", "r0c1": "occluded"}, {"r0c0": "bracelet"}, enrolment=None)
    d.at(100, {"r0c0": "unenrolled", "r0c1": "occluded"}, {"r0c0": "empty"}, enrolment=None)
    assert d.events == []
    cell = d.e.slot_dict(("case-01", "cam0", "r0c0"))
    assert (cell["cond"], cell["state"], cell["similarity"]) == ("unenrolled", "unenrolled", None)
    # The planogram's ring read empty: the page says what to do about it.
    assert cell["hint"] == ("not enrolled: the camera reads it empty; if its ring is there, enrol this case "
                            "(the planogram's pieces are enrolled on its word)")
    d.at(101, {"r0c0": "unenrolled"}, {"r0c0": "ring"}, enrolment=None)
    assert d.e.slot_dict(("case-01", "cam0", "r0c0"))["hint"] == "not enrolled"


def test_schema_1_messages_fall_back_to_the_category_rules(tmp_path):
    e = engine(tmp_path, empty_grace_s=0)
    e.on_labels(labels(SEEN, seq=0), T0)
    ch = e.on_labels(labels({**SEEN, "r0c1": "bracelet"}, seq=1), T0 + 1)
    assert [(ev, i.kind) for ev, i in ch.incidents] == [("opened", "wrong")]


def test_the_categories_policy_ignores_states(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=0, incidents="categories"))
    d.at(0, seen={"r0c1": "bracelet"})                 # present by state, another category: the old rule
    assert d.opened() == [("wrong", "r0c1")]


def test_outside_store_hours_a_missing_piece_alarms_at_once(tmp_path):
    cfg = states_config(tmp_path, policies={"empty_grace_s": 600},
                        hours={"open": "09:00", "close": "18:00", "timezone": "UTC"})
    e = Engine(parse_config(cfg), now=T0)
    night = T0 + 10 * 3600
    e.on_labels(state_labels(seq=0), night)
    ch = e.on_labels(state_labels({"r0c2": "empty"}, seq=1), night + 1)
    assert [(ev, i.kind, i.slot) for ev, i in ch.incidents] == [("opened", "missing", "r0c2")]


def test_state_condition_table():
    assert state_condition("ring", "present", "ring") == ("ok", None)
    assert state_condition("ring", "present", "unknown") == ("ok", None)
    assert state_condition("sold", "empty", "empty") == ("state", None)
    assert state_condition("sold", "occluded", "ring") == ("state", None)
    assert state_condition(None, "present", "ring") == ("unplanned", None)


def test_seq_range_after_an_edge_restart(tmp_path):
    """Missing since seq 1835, then the device restarts (seq from 195 down): never a backwards range."""
    d = Day(engine(tmp_path, empty_grace_s=30))
    d.seq = 1834
    d.at(0)
    d.at(1, {"r0c1": "empty"})
    d.seq = 195
    d.at(60, {"r0c1": "empty"})
    ev = d.e.open[("slot", *R0C1)].evidence
    assert ev["seq_first"] <= ev["seq_last"] == 195, ev


def test_a_sold_slot_typed_back_to_a_piece_gets_its_grace_from_the_edit(tmp_path):
    d = Day(engine(tmp_path, empty_grace_s=30))
    d.at(0)
    key = ("case-01", "cam0", "r0c0")
    d.e.set_expected(key, "sold", T0 + 1)
    for t in range(2, 200, 10):                       # sold: empty for minutes, no incident
        d.at(t, {"r0c0": "empty"})
    # Restocked: the manager types the piece before the device's enrolment took.
    _, ch = d.e.set_expected(key, "ring", T0 + 200)
    assert not ch.incidents
    d.at(201, {"r0c0": "empty"})
    d.at(225, {"r0c0": "empty"})
    assert d.events == []
    d.at(231, {"r0c0": "empty"})                      # ... still empty past the grace: missing
    assert d.events == [("opened", "missing", "r0c0")]


def test_the_record_keeps_what_each_piece_did_not_every_flicker_or_hand(tmp_path):
    """By states, a slot's history rows are its state changes (the category read beside): a category that
    flickers under a present piece and a hand passing over it write nothing; by category, each change does."""
    d = Day(engine(tmp_path))
    rows = d.at(0).slot_rows
    assert len(rows) == 6 and {r[7] for r in rows} == {"present", "empty"}     # the opening state of each slot
    flicker = [d.at(t, seen={"r0c1": lab}).slot_rows for t, lab in ((1, "earring"), (2, "ring"), (3, "earring"))]
    passes = [d.at(t, {"r0c1": "occluded"}).slot_rows + d.at(t + 1).slot_rows for t in (4, 6)]
    assert flicker == [[], [], []] and passes == [[], []]
    taken = d.at(9, {"r0c1": "occluded"}).slot_rows + d.at(10, {"r0c1": "empty"}).slot_rows
    back = d.at(20, {"r0c1": "occluded"}).slot_rows + d.at(21).slot_rows
    assert [(r[3], r[4], r[7]) for r in taken + back] == [("r0c1", "empty", "empty"), ("r0c1", "ring", "present")]
    by_category = Day(engine(tmp_path, incidents="categories"))
    by_category.at(0)
    assert [r[4] for r in by_category.at(1, seen={"r0c1": "earring"}).slot_rows] == ["earring"]
