"""kiosk/chain.py against a real mosquitto: what a store sends, its outbox through outages, plaintext refusal."""
from __future__ import annotations

import time

import jsonschema
import pytest

from edge.errors import ConfigError
from kiosk.chain import Chain, Outbox, evidence_digest, load_schema
from kiosk.config import parse_config
from kiosk.history import History
from kiosk.service import Kiosk
from tests.helpers import MODEL, labels_message as labels
from tests.kiosk.feeds import heartbeat, wait_for

from .chainkit import Collector, chain_kiosk_config
from .conftest import PASSWORDS
from .services import Broker

FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "empty"}


def check_schema(message: dict) -> None:
    jsonschema.validate(message, load_schema(message["kind"]))


def _kiosk(tmp_path, broker, creds, **chain) -> Kiosk:
    cfg = parse_config(chain_kiosk_config(tmp_path, broker, creds, **chain), base_dir=tmp_path)
    return Kiosk(cfg, feed=False)


def _store_day(k: Kiosk) -> None:
    """Labels, a missing ring (incident), its acknowledgement, a count, a heartbeat."""
    k.on_message("labels", labels(FULL, seq=0))
    k.on_message("labels", labels({**FULL, "r0c1": "empty"}, seq=1))
    k.tick()
    inc_id = k.incidents()[0]["id"]
    k.acknowledge(inc_id, "mia", "moved to the safe")
    k.run_count("mia")


def test_a_stores_reports_reach_the_broker_valid_and_in_order(tmp_path, broker, creds):
    hq = Collector(broker)
    k = _kiosk(tmp_path, broker, creds).start()
    try:
        k.on_device("case-01", {"link": "up", "error": None})
        k.on_message("heartbeat", heartbeat({"cam0": 0}))
        _store_day(k)
        got = hq.wait(4)
        wait_for(lambda: len(k.chain.outbox) == 0)
    finally:
        k.stop()
        hq.close()
    for topic, msg in got:
        check_schema(msg)
        assert topic == f"gemsight/zrh-01/{msg['kind']}" and msg["store"] == "zrh-01"
    seqs = [m["seq"] for _, m in got]
    assert seqs == sorted(seqs) and len({m["id"] for _, m in got}) == len(got)
    events = [(m["event"], m["incident"]["state"]) for _, m in got if m["kind"] == "incident"]
    assert events[:2] == [("opened", "open"), ("acknowledged", "acknowledged")]
    inc = next(m["incident"] for _, m in got if m["kind"] == "incident")
    assert "evidence" not in inc          # the pictures and details stay in the store; their digest travels
    last = [m["incident"] for _, m in got if m["kind"] == "incident"][-1]
    kept = History(tmp_path / "state").incidents(limit=10)[0]
    assert last["evidence_sha256"] == evidence_digest(kept["evidence"]) and last["id"] == kept["id"]
    count = next(m["count"] for _, m in got if m["kind"] == "count")
    assert count["kind"] == "manual" and count["user"] == "mia" and len(count["sha256"]) == 64
    health = [m for _, m in got if m["kind"] == "health"][-1]
    cam = health["devices"][0]["cameras"][0]
    assert cam["camera"] == "cam0" and cam["model"]["version"] == MODEL["version"]


def test_evidence_travels_as_its_digest(tmp_path):
    assert evidence_digest({"b": 1, "a": [1, 2]}) == evidence_digest({"a": [1, 2], "b": 1})
    assert evidence_digest({"a": 1}) != evidence_digest({"a": 2})


def test_broker_down_the_kiosk_works_and_the_outbox_sends_in_order_later(tmp_path, creds):
    """Broker down for the store's whole day and a kiosk restart: nothing lost, order kept, nothing blocked."""
    b = Broker(tmp_path / "mosq", PASSWORDS).start()
    hq = Collector(b, persistent=True, client_id="hq-outage")   # its session outlives the broker's restart
    b.stop()
    try:
        k = _kiosk(tmp_path, b, creds, ca_file=str(b.ca)).start()
        t0 = time.perf_counter()
        _store_day(k)
        assert time.perf_counter() - t0 < 2.0          # never waits for the broker
        assert k.state()["incidents"]                  # the store page works as before
        queued = len(k.chain.outbox)
        k.stop()
        assert queued >= 3 and len(Outbox(tmp_path / "state" / "kiosk.sqlite3")) == queued
        k2 = _kiosk(tmp_path, b, creds, ca_file=str(b.ca)).start()        # the kiosk restarted, still offline
        k2.run_count("leo")
        b.start()
        got = hq.wait(queued + 1, timeout=20)
        wait_for(lambda: len(k2.chain.outbox) == 0, timeout=10)
        k2.stop()
    finally:
        hq.close()
        b.stop()
    seqs = [m["seq"] for _, m in got]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= queued + 1   # all of them, once, in order
    assert [m["count"]["user"] for _, m in got if m["kind"] == "count"] == ["mia", "leo"]


def test_plaintext_is_refused_unless_insecure(tmp_path, broker, creds):
    with pytest.raises(ConfigError, match=r"chain: .*plaintext mqtt://127.0.0.1:\d+ is refused"):
        parse_config(chain_kiosk_config(tmp_path, broker, creds, url=broker.plain_url), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="plaintext .* is refused"):
        Chain("zrh-01", broker.plain_url, "x", tmp_path / "o.sqlite3")
    cfg = parse_config(chain_kiosk_config(tmp_path, broker, creds, url=broker.plain_url, insecure=True),
                       base_dir=tmp_path)
    assert cfg.chain.insecure


@pytest.mark.parametrize("chain, problem", [
    ({"url": "http://hq.example"}, "chain.url: .*not a broker URL"),
    ({"store_id": "../etc"}, "chain.store_id"),
    ({"colour": "red"}, "chain.colour"),
])
def test_bad_chain_sections_are_named(tmp_path, broker, creds, chain, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config(chain_kiosk_config(tmp_path, broker, creds, **chain), base_dir=tmp_path)


def test_a_missing_password_file_is_one_line(tmp_path, broker, creds):
    cfg = parse_config(chain_kiosk_config(tmp_path, broker, creds, password_file="./nope.password"),
                       base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"nope.password: cannot read the broker password"):
        Kiosk(cfg, feed=False)


def test_every_incident_kind_of_the_kiosk_fits_the_schema(tmp_path):
    from kiosk.incident import KINDS, Incident

    chain = Chain("zrh-01", "mqtts://127.0.0.1:1", "x", tmp_path / "o.sqlite3")
    for kind in KINDS:
        inc = Incident(kind, "case-01", "cam0", "r0c0", opened_at=1.0, updated_at=1.0, reason="r", id=1)
        check_schema(chain.incidents([("opened", inc)])[0])


def test_an_outbox_that_cannot_be_written_never_stops_the_kiosk(tmp_path, broker, creds, caplog):
    k = _kiosk(tmp_path, broker, creds)
    k.chain.outbox.close()                           # e.g. the disk gave up: every write fails
    k.on_message("labels", labels(FULL, seq=0))
    k.on_message("labels", labels({**FULL, "r0c1": "empty"}, seq=1))
    k.tick()
    assert k.incidents() and k.chain.dropped >= 1    # the incident is the store's; headquarters misses it
    assert "message not queued, the outbox cannot be written" in caplog.text
    k.history.close()
