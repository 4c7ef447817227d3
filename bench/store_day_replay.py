"""Tune slot states on recorded days: ``python bench/store_day_replay.py record|replay ...``.

The store-day benchmark (``bench/store_day.py``) plays whole days through a real device and two kiosks, which
takes minutes per case-hour. Tuning the states' thresholds and the kiosk's rules needs many tries, on several
days. So a day is **recorded** once: the real edge loop plays it frame by frame (``realtime=0``: no frame
dropped) and every frame's slot thumbnails, embeddings and labels message are kept. A **replay** then runs the
device's :class:`~edge.loop.slot_states.SlotTracker` and a kiosk (:class:`kiosk.service.Kiosk`, its SQLite history
in a temporary folder) on the recording, in seconds, with any settings, and scores the kiosk's incidents
against the day's truth like the benchmark does. The staff's actions (a sale marked sold, a restocked slot
enrolled) happen on the video's clock, as in the benchmark.

    python bench/store_day_replay.py record DAY.mp4 --model MODEL --out DAY.rec
    python bench/store_day_replay.py replay DAY.rec [DAY2.rec ...] [--set still_s=1.5] [--set kiosk.swap_confirm_s=8]

A replay is a development tool: the figures to report come from ``bench/store_day.py`` on days that were
not used for tuning (its default seeds), whose device and kiosks run for real.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench import store_day_kit as kit  # noqa: E402
from bench.store_day_score import decision_delays, format_table, load_events, score_cases  # noqa: E402

logger = logging.getLogger("store_day_replay")


# -- record -----------------------------------------------------------------------------------------------
def record(video: Path, model: Path, out: Path, work: Path, side: int = 32) -> Path:
    """Play ``video`` through the real edge loop (every frame) and keep what the slot states are decided from."""
    import cv2

    from edge.link.publisher import Publisher
    from edge.loop import slot_states
    from edge.loop.run import CameraLoop

    video = video.resolve()   # the edge config is read relative to a temporary folder
    day = {"video": video, "slots": video.with_suffix(".slots.yaml"), "events": video.with_suffix(".events.jsonl")}
    keys = kit.keys(work / "keys")
    config = kit.device_config([day], model, work, keys, 1.0, realtime=False)
    times, thumbs, embs, msgs = [], [], [], []
    update, publish = slot_states.SlotTracker.update, Publisher.publish_labels

    def recording_update(self, t, ts, image, crops, embeddings, labels):
        times.append((t, ts))
        # side x side colour (>= the tracker's own thumbnails): its thumbnails of it are those of the crop
        thumbs.append(np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops]))
        embs.append(np.asarray(embeddings, dtype=np.float16))
        return update(self, t, ts, image, crops, embeddings, labels)

    def recording_publish(self, camera, msg):
        msgs.append({k: msg[k] for k in ("device", "camera", "capture_ts", "model", "slots", "counts",
                                          "frame_index")})
        return publish(self, camera, msg)

    slot_states.SlotTracker.update, Publisher.publish_labels = recording_update, recording_publish
    try:
        CameraLoop(config, samples=0).run()
    finally:
        slot_states.SlotTracker.update, Publisher.publish_labels = update, publish
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "frames.npz", t=np.array(times), thumbs=np.stack(thumbs), embs=np.stack(embs))
    with gzip.open(out / "messages.jsonl.gz", "wt") as f:
        for m in msgs:
            f.write(json.dumps(m) + "\n")
    (out / "day.json").write_text(json.dumps({k: str(v) for k, v in day.items()} | {"model": str(model)}) + "\n")
    logger.info("recorded %d frames of %s into %s", len(times), video, out)
    return out


# -- replay -----------------------------------------------------------------------------------------------
class _Thumbs:
    """The slot map a replayed tracker crops with: the recorded thumbnails are its 'crops'."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def crop(self, image):
        return image


_LOADED: dict[Path, tuple] = {}


def load(rec: Path) -> tuple[dict, list[dict], dict[str, np.ndarray], list[dict]]:
    """A recording (kept in memory: a sweep replays it many times)."""
    if rec not in _LOADED:
        day = json.loads((rec / "day.json").read_text())
        with np.load(rec / "frames.npz") as z:
            frames = {k: z[k] for k in z.files}
        emb = frames["embs"].astype(np.float32)
        frames["embs"] = emb / np.linalg.norm(emb, axis=2, keepdims=True)
        with gzip.open(rec / "messages.jsonl.gz", "rt") as f:
            msgs = [json.loads(line) for line in f]
        _LOADED[rec] = (day, load_events(day["events"]), frames, msgs)
    return _LOADED[rec]


def replay(rec: Path, states: dict[str, Any], policies: dict[str, Any], work: Path, mode: str = "states",
           fps: float = 5.0, every: int = 1, trace: list | None = None) -> tuple[list[dict], list[dict]]:
    """Replay one recording (every ``every``-th frame); returns (truth, the kiosk's incidents in the scorer's
    form)."""
    import copy

    import yaml

    from edge.config.states import StatesConfig
    from edge.loop import slot_states
    from edge.loop.identity import measures

    day, truth, frames, msgs = load(rec)
    names = [s["name"] for s in yaml.safe_load(Path(day["slots"]).read_text())["slots"]]
    camera = msgs[0]["camera"]
    manifest = _Manifest(day["model"])
    tracker = slot_states.SlotTracker(camera, _Thumbs(names), [], manifest, StatesConfig(**states), None)
    clock = kit.VideoClock(fps)
    cfg = kit.kiosk_config(mode, work, [day], [truth], ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"),
                           {"client_secret": _secret(work), "server_public": _public(work)}, grace_s=30.0, speed=1.0,
                           swap_confirm_s=kit.SWAP_CONFIRM_S)
    data = cfg.model_dump(mode="json")
    data["policies"].update(policies)
    data["policies"]["heartbeat_s"] = 1e6        # no heartbeats in a replay
    data["evidence"] = {"enabled": False} if "evidence" in data else data.get("evidence")
    cfg = type(cfg).model_validate({k: v for k, v in data.items() if v is not None})
    kiosk = kit.Kiosk(cfg, clock=clock, feed=False)
    request = lambda _c, _d, _cam, slots, pieces=(): tracker.enrol(slots, pieces)  # noqa: E731
    staff = kit.Staff([truth], [kiosk], clock, request=request)
    if trace is not None:   # the identity checks after hands, with their figures
        check = tracker._check_identity

        def traced(tr, t):
            before = tr.before
            check(tr, t)
            if tr.other is not None:
                after = tracker._window(tr, tr.still_since + tracker.cfg.identity_guard_s, t)
                # the window before the hand that is most like what lies there now
                cos, diff, ncc, local = max((measures(b, after, tracker.cfg) for b in before),
                                            key=lambda m: m[0] - m[1])
                k = next(k for k, x in enumerate(tracker._tracks) if x is tr)
                trace.append((t, ("check", k, round(cos, 4), round(diff, 4), tr.other, round(ncc, 4),
                                  round(local, 4))))
        tracker._check_identity = traced
    real_jpeg = slot_states.jpeg
    slot_states.jpeg = lambda c: b""
    staff_thread = None   # the staff act on a thread of their own, as in the benchmark: an enrol request for a
    # slot that has only just become still waits there for the frames past the hand's shadow that this loop feeds
    try:
        next_tick = 0.0
        for i in range(0, len(msgs), every):
            msg = copy.deepcopy(msgs[i])
            t, ts = frames["t"][i]
            thumbs = list(frames["thumbs"][i])
            out = tracker.update(float(t), float(ts), thumbs, thumbs, frames["embs"][i],
                                 [s["topk"][0]["label"] if s["label"] == "unknown" and s["topk"] else s["label"]
                                  for s in msg["slots"]])
            for s, (state, sim) in zip(msg["slots"], out):
                s["state"], s["similarity"] = state.value, sim
            if trace is not None:
                trace.append((float(t), [(s["label"], s["state"], s["similarity"]) for s in msg["slots"]]))
            msg.update(schema_version=2, kind="labels", seq=i, publish_ts=float(ts), latencies_ms={"total": 1.0},
                       enrolment=tracker.summary())
            clock.seen(msg)
            kiosk.on_message("labels", msg)
            if staff_thread is not None:
                staff_thread.join(0.005)          # a waiting request takes the frame it waited for
            if (staff_thread is None or not staff_thread.is_alive()) and staff.todo and clock() >= staff.todo[0][0]:
                staff_thread = threading.Thread(target=staff.due, name="staff", daemon=True)
                staff_thread.start()
            if clock() >= next_tick:
                kiosk.tick()
                next_tick = clock() + 1.0
        if staff_thread is not None:
            staff_thread.join(30)
    finally:
        slot_states.jpeg = real_jpeg
        kiosk.stop()
    rows = kit.incidents_of(Path(cfg.state_dir))
    incidents = [{"kind": r["kind"], "camera": r["camera"], "slot": r["slot"], "opened_t": float(r["opened_at"])}
                 for r in rows]
    return truth, incidents


def _names(rec: Path) -> list[str]:
    import yaml

    return [s["name"] for s in yaml.safe_load(Path(load(rec)[0]["slots"]).read_text())["slots"]]


class _Manifest:
    """What a tracker reads of the model's manifest."""

    def __init__(self, model: str) -> None:
        path = Path(model)
        data = json.loads(((path.parent if path.suffix == ".onnx" else path) / "manifest.json").read_text())
        self.name, self.version = data["name"], data["version"]
        emb = data.get("embedding")
        self.embedding = argparse.Namespace(**emb) if emb else None


def _secret(work: Path) -> Path:
    return kit.keys(work / "keys")["client_secret"]


def _public(work: Path) -> Path:
    return work / "keys" / "device" / "server.key"


def _brief(r: dict) -> dict:
    return {"false_per_h": r["false"]["per_case_hour"], "false_by_cause": {k: v for k, v in r["false"]["by_cause"].items() if v},
            "theft": r["theft"]["recall"], "theft_p95_s": r["theft"]["tta_p95_s"], "swap": r["swap"]["recall"],
            "swap_miscalled": r["swap"]["miscalled"], "smash": r["smash"]["recall"]}


def _line(b: dict) -> str:
    b = _brief(b)
    causes = ",".join(f"{k[:4]}{v}" for k, v in b["false_by_cause"].items())
    return (f"F/h {b['false_per_h']:.2f} [{causes}] theft {b['theft']} p95 {b['theft_p95_s']} swap {b['swap']} "
            f"(miss {b['swap_miscalled']}) smash {b['smash']}")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="play a day through the real edge loop and keep every frame's inputs")
    r.add_argument("video", type=Path)
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--side", type=int, default=32, help="side of the slot thumbnails kept (pixels)")
    q = sub.add_parser("replay", help="replay recordings with settings; print the scores")
    q.add_argument("recordings", type=Path, nargs="+")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a states setting (still_s=1.5) or a kiosk policy (kiosk.swap_confirm_s=8)")
    q.add_argument("--mode", default="states", choices=("states", "categories"))
    q.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="replay every combination of these settings' values")
    q.add_argument("--trace", action="append", default=[], metavar="SLOT@T0-T1",
                   help="print a slot's state, similarity and label frame by frame over a time span")
    q.add_argument("--every", type=int, default=1, help="replay every N-th frame (a slower camera)")
    q.add_argument("--explain", action="store_true", help="print each false incident and each missed event")
    q.add_argument("--delays", action="store_true",
                   help="print how long after the hand each taken or swapped piece's slot read empty or changed")
    q.add_argument("--json", type=Path, help="write the scores here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("edge", "kiosk"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.cmd == "record":
        with tempfile.TemporaryDirectory(prefix="record-") as tmp:
            record(args.video, args.model, args.out, Path(tmp), args.side)
        return 0
    base = dict(item.partition("=")[::2] for item in args.set)
    axes = [(g.partition("=")[0], g.partition("=")[2].split(",")) for g in args.grid]
    grid = [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    rows = []
    for point in grid:
        settings = {**base, **point}
        states, policies = {}, {}
        for key, value in settings.items():
            (policies if key.startswith("kiosk.") else states)[key.removeprefix("kiosk.")] = _value(value)
        cases = []
        for rec in args.recordings:
            trace: list | None = [] if args.trace or args.delays else None
            with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
                cases.append(replay(rec, states, policies, Path(tmp), args.mode, every=args.every, trace=trace))
            for spec in args.trace:   # SLOT@T0-T1
                slot, _, span = spec.partition("@")
                t0, t1 = (float(x) for x in span.split("-"))
                i = load(rec)[0]["names"].index(slot) if "names" in load(rec)[0] else _names(rec).index(slot)
                for t, row in trace:
                    if t0 <= t <= t1 and row[0] == "check" and row[1] == i:
                        print(f"  {rec.name} {slot} t={t:7.1f} CHECK cos={row[2]} look={row[3]} ncc={row[5]} local={row[6]} "
                              f"other={row[4]}")
                    elif t0 <= t <= t1 and row[0] != "check":
                        print(f"  {rec.name} {slot} t={t:7.1f} {row[i][1]:10s} sim={row[i][2]} label={row[i][0]}")
            if args.delays:
                names = _names(rec)
                d = decision_delays(cases[-1][0], [(t, {n: row[k][1] for k, n in enumerate(names)})
                                                   for t, row in trace if row[0] != "check"])
                print(f"  {rec.name} decided after the hand: median {d['median_s']} s, p95 {d['p95_s']} s, max "
                      f"{d['max_s']} s, {d['undecided']} of {d['n']} never;",
                      "; ".join(f"{r['kind']} {r['slot']}@{r['t']:g} {r['delay_s']} s" for r in d["slowest"]))
        views = [score_cases([c], grace_s=30.0) for c in cases]
        pooled = score_cases(cases, grace_s=30.0)
        rows.append({"settings": settings, "views": [_brief(v) for v in views], "pooled": _brief(pooled)})
        print(" ".join(f"{k}={v}" for k, v in point.items()) or "(base)", "|",
              " | ".join(_line(v) for v in views), "|| pooled", _line(pooled), flush=True)
        if args.explain:
            print(format_table({"pooled": pooled}))
            for f in pooled["false"]["items"]:
                print("  false", f)
            for m in pooled["missed"]:
                print("  missed", m)
    if args.json:
        args.json.write_text(json.dumps({"base": base, "every": args.every, "recordings": [str(r) for r in args.recordings],
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
