"""The store-day staff: at opening, a planned slot the device left unenrolled is enrolled on the planogram's
word (the faint piece the model reads empty, issue 30), and nothing else is touched."""
from __future__ import annotations

from bench import store_day_kit as kit
from kiosk.service import Kiosk
from tests.kiosk.states_feeds import state_labels

STOCK = {"r0c0": "ring", "r0c1": "ring", "r0c2": "necklace", "r1c0": "watch", "r1c1": "earring"}


def test_the_opening_check_enrols_planned_slots_left_unenrolled_on_the_planograms_word(tmp_path):
    truth = [{"t": 0.0, "kind": "stock", "slots": [n], "class": c, "piece": f"p{i}"}
             for i, (n, c) in enumerate(STOCK.items())]
    keys = kit.keys(tmp_path / "keys")
    cfg = kit.kiosk_config("states", tmp_path, [{}], [truth], ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"),
                           {"client_secret": keys["client_secret"], "server_public": tmp_path / "none.key"},
                           grace_s=30.0, speed=1.0, swap_confirm_s=10.0)
    now = [0.0]
    kiosk = Kiosk(cfg, clock=lambda: now[0], feed=False)
    asked = []

    def device(_cfg, _device, camera, slots, pieces=()):
        asked.append((camera, slots, list(pieces)))
        return {"enrolled": list(slots), "refused": {}, "labels": {s: "empty" for s in slots},
                "unseen": list(slots), "enrolment": None}

    try:
        # r0c2's faint necklace reads empty and never enrolled; r1c2 is not in the planogram.
        kiosk.on_message("labels", state_labels({"r0c2": "unenrolled", "r1c2": "unenrolled"}, {"r0c2": "empty"},
                                                device=kit.DEVICE, camera="case0"))
        staff = kit.Staff([truth], [kiosk], lambda: now[0], request=device)
        now[0] = kit.OPENING_CHECK_S - 1
        assert staff.due() == 0 and asked == []
        now[0] = kit.OPENING_CHECK_S
        assert staff.due() == 1
        assert asked == [("case0", ["r0c2"], ["r0c2"])]
        assert staff.done[0]["unseen"] == ["r0c2"] and staff.done[0]["action"] == "enrol_unwatched"
    finally:
        kiosk.stop()
