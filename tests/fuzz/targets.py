"""The fuzz targets: what each one feeds, to what, and what must hold. Shared by ``tests/fuzz`` (bounded,
deterministic) and ``bench/fuzz.py`` (longer runs).

Every target's property is the same at heart: the input is accepted, or refused with the project's
own error class and a message that names the source (one line; config and manifest errors list one
problem per line, each naming the file). Anything else - another exception, a hang, a dead thread -
is a failure. Some targets check more (an accepted slot map has no overlap; a changed bundle byte
is always refused; the snapshot endpoint still answers after every request).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import yaml
import zmq
from hypothesis import strategies as st

from edge.errors import (BundleError, ConfigError, DataError, GemsightError, ManifestError, MessageError,
                         SourceError)
from tests.fuzz.kiosk_http import kiosk_http
from tests.fuzz.strategies import (IDS, JSON_VALUES, byte_edits, deep, json_bytes, mutated, pick, poisoned,
                                   valid_message, valid_slot_map, yaml_bytes)

Check = Callable[[Any], str]  # raises on a broken property; else says what happened ("accepted", "refused")


@dataclass(frozen=True)
class Target:
    """A fuzz target: ``open(workdir)`` is a context manager yielding ``(strategy, check)``."""

    name: str
    what: str
    open: Callable[[Path], contextlib.AbstractContextManager[tuple[st.SearchStrategy, Check]]]


def refusal(exc: BaseException, cls: type[GemsightError] | tuple[type[GemsightError], ...], source: str | None = None,
            lines: bool = False, limit: int = 2000) -> None:
    """Assert ``exc`` is a proper refusal: ``cls``, non-empty, one line (or one line per problem,
    each naming ``source`` when ``lines``), bounded."""
    if not isinstance(exc, cls):
        raise AssertionError(f"expected {cls}, got {type(exc).__name__}: {exc!r}"[:2000]) from exc
    text = str(exc)
    parts = text.split("\n") if lines else [text]
    if not text or (not lines and "\n" in text):
        raise AssertionError(f"not a one-line message: {text[:500]!r}") from exc
    for part in parts:
        # A config line may echo a long value the file holds; a one-line error from the wire stays short.
        if not part.strip() or len(part) > (20_000 if lines else limit) or (source and not part.startswith(source)):
            raise AssertionError(f"bad message line {part[:300]!r} (source {source})") from exc


# -- edge.yaml and slot maps ---------------------------------------------------------------------
BASE_CONFIG = {
    "device": "case-01",
    "model": {"path": "model", "precision": "auto"},
    "runtime": {"name": "auto", "options": {"onnxruntime": {"threads": 2}}},
    "cameras": [
        {"id": "cam0", "source": "file:///data/case.mp4?loop=1", "fps": 10,
         "reconnect": {"initial_s": 0.5, "max_s": 30, "stall_s": 5},
         "slots": [{"name": "r0c0", "rect": [0.05, 0.1, 0.3, 0.45]},
                   {"name": "r1c0", "polygon": [[0.05, 0.55], [0.3, 0.55], [0.28, 0.9], [0.07, 0.9]]}]},
        {"id": "cam1", "source": "rtsp://10.0.0.2/s", "credentials": "cam1-login", "slots_file": "case.slots.yaml"},
    ],
    "postprocess": {"min_score": 0.5, "window": 5, "top_k": 3},
    "publish": {"endpoint": "tcp://127.0.0.1:5555", "snapshot_endpoint": "tcp://127.0.0.1:5556", "curve": None},
    "metrics": {"host": "127.0.0.1", "port": 9108},
}
BASE_SLOTS = {"slots": [{"name": f"r{r}c{c}", "rect": [c / 4, r / 3, (c + 1) / 4, (r + 1) / 3]}
                        for r in range(3) for c in range(4)]}


@contextlib.contextmanager
def _config(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from edge.capture.uri import parse_source  # noqa: PLC0415
    from edge.config.device import load_config  # noqa: PLC0415

    (workdir / "case.slots.yaml").write_text(yaml.safe_dump(BASE_SLOTS))
    path = workdir / "edge.yaml"

    def check(data: bytes) -> str:
        path.write_bytes(data)
        try:
            cfg = load_config(path)
        except Exception as exc:  # noqa: BLE001 - the property is about which exception
            refusal(exc, ConfigError, str(path), lines=True)
            return "refused"
        for cam in cfg.cameras:  # what run and check do next with each camera's URI (short of opening it)
            try:
                parse_source(cam.source)
            except Exception as exc:  # noqa: BLE001
                refusal(exc, (ConfigError, SourceError), "source ", limit=20_000)  # it echoes the URI
                return "accepted, source refused"
        return "accepted"

    def variant(slots: list[dict], cam: str, source: str, paths: tuple[str, str, str]) -> dict:
        doc = copy.deepcopy(BASE_CONFIG)
        doc["cameras"][0].update(id=cam, source=source, slots=slots)
        doc["model"]["path"], doc["cameras"][1]["slots_file"], doc["cameras"][1]["credentials"] = paths
        return doc

    sources = st.sampled_from(["file://case.mp4", "file:case.mp4?loop=1", "file:///abs/c.mp4?realtime=0",
                               "v4l2:///dev/video0?width=640", "rtsp://cam.local/s", "http://10.0.0.3/mjpeg",
                               "csi://0", "csi://1?flip=2&fps=30", "gst://videotestsrc ! appsink",
                               "v4l2:///dev/video0?fourcc=MJPG"])
    paths = st.tuples(poisoned(st.sampled_from(["model", "/abs/model", "~/m.onnx", "models/current"])),
                      poisoned(st.sampled_from(["case.slots.yaml", "./case.slots.yaml",
                                                str(workdir / "case.slots.yaml")])),
                      poisoned(st.sampled_from(["cam1-login", "keys/login", "/run/credentials/x"])))
    valid = st.builds(variant, valid_slot_map(), IDS, poisoned(sources), paths)

    def dump(doc: Any) -> bytes:
        return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")

    yield pick(valid.map(dump), valid.flatmap(lambda d: mutated(d, 2)).map(dump),
               valid.flatmap(lambda d: yaml_bytes(d)), yaml_bytes(BASE_CONFIG)), check


def _rects_overlap(slots) -> bool:
    for i, a in enumerate(slots):
        for b in slots[i + 1:]:
            w = min(a.rect[2], b.rect[2]) - max(a.rect[0], b.rect[0])
            h = min(a.rect[3], b.rect[3]) - max(a.rect[1], b.rect[1])
            if w > 0 and h > 0 and w * h > 1e-9:
                return True
    return False


UNIT = st.floats(0, 1)
SLOT = st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["a", "b", "c", "r0c0"]), st.text(max_size=6))},
                             optional={
    "rect": st.one_of(st.lists(UNIT, min_size=4, max_size=4).map(lambda v: [min(v[0], v[2]), min(v[1], v[3]),
                                                                          max(v[0], v[2]), max(v[1], v[3])]),
                      st.lists(st.one_of(UNIT, JSON_VALUES), max_size=5)),
    "polygon": st.one_of(st.lists(st.tuples(UNIT, UNIT).map(list), min_size=3, max_size=6), JSON_VALUES)})


@contextlib.contextmanager
def _slots(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from edge.config.device import load_slots_file  # noqa: PLC0415
    from edge.loop.slots import SlotMap  # noqa: PLC0415

    path = workdir / "case.slots.yaml"

    def check(case: tuple[Any, int, int]) -> str:
        doc, width, height = case
        path.write_bytes(doc if isinstance(doc, bytes) else yaml.safe_dump(doc, allow_unicode=True).encode())
        try:
            slots = load_slots_file(path)
        except Exception as exc:  # noqa: BLE001
            refusal(exc, ConfigError, str(path), lines=True)
            return "refused"
        if all(s.polygon is None for s in slots) and _rects_overlap(slots):
            raise AssertionError(f"overlapping rects accepted: {[s.rect for s in slots]}")
        try:
            SlotMap(slots, camera="cam0").crop(np.full((height, width, 3), 90, np.uint8))
        except Exception as exc:  # noqa: BLE001 - a slot too small for this frame is a ConfigError
            refusal(exc, (ConfigError, DataError))
            return "accepted, too small to crop"
        return "accepted"

    docs = pick(valid_slot_map().map(lambda slots: {"slots": slots}),
                     valid_slot_map().flatmap(lambda slots: mutated({"slots": slots}, 1)),
                     st.fixed_dictionaries({"slots": st.lists(SLOT, max_size=6)}), yaml_bytes(BASE_SLOTS))
    yield st.tuples(docs, st.integers(1, 400), st.integers(1, 300)), check


# -- the model manifest --------------------------------------------------------------------------
BASE_MANIFEST = {
    "schema_version": 1, "name": "gemsight", "version": "1.2.0", "arch": "resnet18",
    "classes": ["ring", "necklace", "empty"],
    "input": {"name": "input", "layout": "NCHW", "dtype": "float32", "size": [64, 64], "color": "RGB",
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "stretch",
              "interpolation": "area"},
    "output": {"name": "logits", "kind": "logits"}, "precision": "int8",
    "calibration": {"method": "entropy", "images": 100, "digest": None},
    "metrics": {"fp32_accuracy": 0.97}, "provenance": {"git": "abc", "date": "2026-11-30"},
}


@contextlib.contextmanager
def _manifest(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from edge.manifest import Manifest  # noqa: PLC0415

    path = workdir / "manifest.json"

    def check(data: bytes) -> str:
        path.write_bytes(data)
        try:
            Manifest.from_json(data.decode("utf-8", "replace"), "metadata")
        except Exception as exc:  # noqa: BLE001
            refusal(exc, ManifestError, "metadata", lines=True)
        try:
            Manifest.load(path)
        except Exception as exc:  # noqa: BLE001
            refusal(exc, ManifestError, str(path), lines=True)
            return "refused"
        return "accepted"

    valid = st.builds(lambda classes, size, version: {**BASE_MANIFEST, "classes": classes, "version": version,
                                                      "input": {**BASE_MANIFEST["input"], "size": size}},
                      st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=6, unique=True),
                      st.lists(st.integers(8, 640), min_size=2, max_size=2), st.text(max_size=8))
    yield pick(valid.map(lambda d: json.dumps(d).encode()), valid.flatmap(json_bytes), json_bytes(BASE_MANIFEST)), check


# -- bundles -------------------------------------------------------------------------------------
def pack(members: list[tuple[str, bytes]]) -> bytes:
    """A tar the way ``gemsight-deploy bundle`` writes one (canonical ustar headers), of these members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@contextlib.contextmanager
def _bundle(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    from deploy.bundle import BUNDLE_JSON, SIGNATURE, SUMS, format_sums, sign_sums  # noqa: PLC0415
    from deploy.keys import PublicKey, key_id_of  # noqa: PLC0415
    from deploy.verify import extract_verified, verify_bundle  # noqa: PLC0415

    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed: runs repeat exactly
    key_id = key_id_of(private.public_key())
    keys = {key_id: PublicKey(key_id, private.public_key(), workdir / "fuzz.pub")}
    manifest = json.dumps(BASE_MANIFEST).encode()
    model = b"\x08\x07fake onnx bytes" * 8
    meta = {"format": 1, "version": "1.2.0", "created": "2026-11-30T00:00:00Z", "signer": key_id,
            "model": {"name": "gemsight", "version": "1.2.0"}, "model_digest": "sha256:" + "0" * 64,
            "files": ["manifest.json", "model.onnx"]}

    def signed(payload: list[tuple[str, bytes]], meta_bytes: bytes) -> list[tuple[str, bytes]]:
        digests = {n: hashlib.sha256(d).hexdigest() for n, d in payload}
        digests[BUNDLE_JSON] = hashlib.sha256(meta_bytes).hexdigest()
        sums = format_sums(digests)
        return [(BUNDLE_JSON, meta_bytes), (SUMS, sums), (SIGNATURE, sign_sums(sums, private))] + payload

    good = pack(signed([("manifest.json", manifest), ("model.onnx", model)], json.dumps(meta).encode()))
    path = workdir / "fuzz.gsb"
    path.write_bytes(good)
    verify_bundle(path, keys)  # the base case is a valid bundle, or the fuzzing proves nothing

    names = st.one_of(st.sampled_from(["model.onnx", "manifest.json", "openvino/model.xml", BUNDLE_JSON, SUMS,
                                       "../x", "/etc/passwd", ".hidden", "a//b", "a" * 120]), st.text(max_size=12))
    safe_names = st.from_regex(r"\A[a-z0-9_][a-z0-9._-]{0,10}(/[a-z0-9_][a-z0-9._-]{0,10}){0,2}\Z")
    structured = st.fixed_dictionaries({
        # "auto": the valid bundle.json, listing whatever members were drawn.
        "meta": st.one_of(st.just(b"auto"), mutated(meta).map(lambda d: json.dumps(d).encode()), json_bytes(meta)),
        "manifest": st.one_of(st.just(manifest), json_bytes(BASE_MANIFEST)),
        "extra": st.lists(st.tuples(st.one_of(safe_names, names), st.binary(max_size=40)), max_size=3,
                          unique_by=lambda m: m[0]),
        "control": st.sampled_from(["signed", "sums", "sig"]),
        "junk": st.binary(max_size=80),
    })

    def check(case: tuple[str, Any]) -> str:
        kind, value = case
        if kind == "bytes":
            data = value
        else:
            payload = [("manifest.json", value["manifest"]), ("model.onnx", model)] + value["extra"]
            meta_bytes = value["meta"]
            if meta_bytes == b"auto":
                meta_bytes = json.dumps({**meta, "files": sorted(n for n, _ in payload)}).encode()
            try:
                members = signed(payload, meta_bytes)
                if value["control"] == "sums":
                    members[1] = (SUMS, value["junk"])
                elif value["control"] == "sig":
                    members[2] = (SIGNATURE, value["junk"])
                data = pack(members)
            except (ValueError, UnicodeError, tarfile.TarError):
                return "not packable"  # a name tar itself cannot store: nothing to verify
        path.write_bytes(data)
        try:
            bundle = verify_bundle(path, keys)
        except Exception as exc:  # noqa: BLE001
            refusal(exc, BundleError, str(path))
            return "refused"
        if kind == "bytes" and data != good:
            raise AssertionError("a bundle with changed bytes was accepted")
        dest = workdir / f"x{hashlib.sha256(data).hexdigest()[:12]}"
        if not dest.exists():
            dest.mkdir()
            extract_verified(bundle, dest)
        return "accepted"

    well_formed = st.fixed_dictionaries({  # accepted: extraction is fuzzed too (member names, sizes, nesting)
        "meta": st.just(b"auto"), "manifest": st.just(manifest), "control": st.just("signed"), "junk": st.just(b""),
        "extra": st.lists(st.tuples(st.one_of(safe_names, st.sampled_from(["a", "a/b", "a/b/c", "model.onnx/x"])),
                                    st.binary(max_size=2000)), max_size=4, unique_by=lambda m: m[0])})
    yield pick(st.tuples(st.just("bytes"), byte_edits(good)), st.tuples(st.just("bytes"), header_edits(good)),
               st.tuples(st.just("built"), structured),
               st.tuples(st.just("built"), well_formed)), check


# ustar header fields (offset, length) and type flags worth trying: links, devices, directories, pax, GNU.
_FIELDS = [(0, 100), (100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (156, 1), (157, 100), (257, 8), (329, 16),
           (345, 155)]
_TYPES = [b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"x", b"g", b"L", b"K", b"S", b"V", b"?"]


def header_edits(bundle: bytes) -> st.SearchStrategy[bytes]:
    """``bundle`` with one field of one member's tar header rewritten, its checksum then fixed or not
    (fixed, tarfile reads on and the verifier's own checks are what refuse it)."""
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        offsets = [m.offset for m in tar.getmembers()]

    @st.composite
    def edit(draw: st.DrawFn) -> bytes:
        buf = bytearray(bundle)
        at = draw(st.sampled_from(offsets))
        start, length = draw(st.sampled_from(_FIELDS))
        value = draw(st.sampled_from(_TYPES)) if length == 1 else draw(st.one_of(
            st.binary(min_size=1, max_size=length),
            st.sampled_from([b"../../etc/passwd\0", b"/abs\0", b"a" * 100, b"77777777777\0", b"\x80" + b"\xff" * 11,
                             b"ustar\0" + b"00", b"ustar  \0"]).map(lambda v: v[:length])))
        buf[at + start:at + start + len(value)] = value
        if draw(st.booleans()):
            header = buf[at:at + 512]
            header[148:156] = b" " * 8
            buf[at + 148:at + 156] = b"%06o\0 " % sum(header)
        return bytes(buf)
    return edit()


# -- snapshot requests on a real Publisher -------------------------------------------------------
@contextlib.contextmanager
def _snapshot(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from edge.link import messages  # noqa: PLC0415
    from edge.link.ingress import MAX_REQUEST_BYTES  # noqa: PLC0415
    from edge.link.publisher import Publisher
    from tests.helpers import make_labels  # noqa: PLC0415

    ctx = zmq.Context.instance()
    with Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", curve=None) as pub:
        pub.publish_labels("cam0", make_labels("cam0"))
        pub.publish_status("cam0", "up", "fuzz")

        def ask(frames: list[bytes]) -> bytes:
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            try:
                req.connect(pub.snapshot_endpoint)
                req.send_multipart(frames)
                if not req.poll(3000):
                    raise AssertionError(f"no answer to {[f[:40] for f in frames]}")
                return req.recv()
            finally:
                req.close(linger=0)

        def check(frames: list[bytes]) -> str:
            reply = messages.decode(ask(frames))
            if "error" not in reply:
                messages.parse_snapshot(messages.encode(reply))
            # The endpoint still serves: the next good request gets the state.
            state = messages.parse_snapshot(ask([b'{"camera": null}']))
            if "cam0" not in state["cameras"]:
                raise AssertionError("the snapshot lost its state")
            return "refused" if "error" in reply else "answered"

        frame = st.one_of(json_bytes({"camera": "cam0"}), deep(b"[", b"]", MAX_REQUEST_BYTES),
                          st.binary(max_size=64)).filter(lambda f: len(f) <= MAX_REQUEST_BYTES)
        request = st.fixed_dictionaries({"camera": st.one_of(st.none(), st.just("cam0"), IDS, st.text(max_size=8))})
        yield pick(request.map(lambda r: [messages.encode(r)]), st.lists(frame, min_size=1, max_size=3)), check


# -- labels / status / heartbeat as a consumer parses them ---------------------------------------
@contextlib.contextmanager
def _messages(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Check]]:
    from edge.link import messages  # noqa: PLC0415
    from edge.link.listen import Listener  # noqa: PLC0415
    from edge.link.listen_view import Renderer  # noqa: PLC0415
    from tests.helpers import make_labels  # noqa: PLC0415

    labels = make_labels("cam0")
    labels.update(seq=3, publish_ts=labels["capture_ts"])
    bases = {
        "labels": labels,
        "status": messages.status_message(device="case-01", camera="cam0", state="down", detail="x", ts=1.0),
        "heartbeat": messages.heartbeat_message(device="case-01", ts=1.0, uptime_s=2.0,
                                                cameras={"cam0": {"seq": 3, "state": "up", "fps": 9.5}}),
    }
    topics = {"labels": b"gemsight/case-01/cam0/labels", "status": b"gemsight/case-01/cam0/status",
              "heartbeat": b"gemsight/case-01/_/heartbeat"}
    with Listener("tcp://127.0.0.1:9", plaintext=True) as lis:
        views = [Renderer(io.StringIO(), mode) for mode in ("json", "lines", "table")]

        def check(case: tuple[str, bytes, bytes]) -> str:
            kind, topic, payload = case
            try:
                messages.parse_message(topic, payload)
            except Exception as exc:  # noqa: BLE001
                refusal(exc, MessageError)
            ev = lis._handle([topic, payload])  # what recv() does with every message; must never raise
            if ev is not None:
                for view in views:
                    view.show(ev)
                    text = view.out.getvalue().replace("\x1b[H\x1b[2J", "")  # the table's own redraw
                    if view.mode != "json" and any(ord(c) < 32 and c != "\n" or 127 <= ord(c) < 160 for c in text):
                        raise AssertionError(f"{view.mode} output holds control characters: {text[:300]!r}")
                    view.out.seek(0)
                    view.out.truncate()
            snapshot = b'{"device":"case-01","cameras":{"cam0":' + payload + b'},"status":{}}'
            try:
                messages.parse_snapshot(snapshot)
            except Exception as exc:  # noqa: BLE001
                refusal(exc, MessageError)
            return "refused" if ev is None else "accepted"

        fuzzed = st.sampled_from(sorted(bases)).flatmap(lambda k: st.tuples(
            st.just(k),
            st.one_of(st.just(topics[k]), st.sampled_from(list(topics.values())),
                      byte_edits(topics[k], 2), st.binary(max_size=40)),
            st.one_of(json_bytes(bases[k]), valid_message(k).flatmap(json_bytes))))
        # Half the cases are well-formed, with arbitrary content: the accepting path is fuzzed too.
        valid = st.sampled_from(sorted(bases)).flatmap(lambda k: st.tuples(
            st.just(k), st.just(topics[k]), valid_message(k).map(messages.encode)))
        cases = pick(valid, fuzzed)
        yield cases, check


TARGETS = {t.name: t for t in (
    Target("config", "edge.yaml read by load_config", _config),
    Target("slot_map", "slots files read by load_slots_file, then cropped by SlotMap", _slots),
    Target("manifest", "manifest.json by Manifest.load and the ONNX-metadata text by Manifest.from_json", _manifest),
    Target("bundle", "bundle bytes and signed bundles of fuzzed members by verify_bundle", _bundle),
    Target("snapshot", "snapshot REP requests to a real Publisher on loopback", _snapshot),
    Target("messages", "labels/status/heartbeat through listen's handler, renderers and parse_snapshot", _messages),
    Target("kiosk_http", "the kiosk's HTTP routes on a real server: bodies, JSON nesting, Unicode, form fields",
           kiosk_http),
)}


def _listen(workdir: Path):
    from tests.fuzz.targets_listen import open_listen  # noqa: PLC0415

    return open_listen(workdir)


TARGETS["listen"] = Target("listen", "listen over a real socket: non-UTF-8, surrogates, oversize; must keep hearing",
                           _listen)
