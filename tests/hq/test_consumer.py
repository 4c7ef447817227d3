"""gemsight-hq's intake against the real broker and PostgreSQL: applied once, refused, malformed, plaintext."""
from __future__ import annotations

import json
import logging
import uuid

import psycopg
import pytest

from edge.errors import ConfigError
from hq.config import parse_config
from hq.consumer import Consumer, check, Refused
from hq.migrations import MIGRATIONS, current_version, migrate
from kiosk.config import parse_config as kiosk_config
from kiosk.service import Kiosk

from .chainkit import chain_kiosk_config, hq_config_dict, publish_raw, wait_sql

KNOWN = frozenset({"zrh-01", "gva-02", "bsl-03"})


def count_message(store: str = "zrh-01", seq: int = 1, **over) -> dict:
    return {"schema_version": 1, "kind": "count", "id": uuid.uuid4().hex, "seq": seq, "store": store, "ts": 1.0e9,
            "count": {"id": seq, "kind": "opening", "user": "schedule", "ts": 1.0e9,
                      "totals": {"expected": 3, "seen": 3, "missing": 0}, "sha256": "a" * 64}, **over}


@pytest.fixture
def hq(tmp_path, broker, dsn):
    cfg = parse_config(hq_config_dict(tmp_path, broker, dsn))
    c = Consumer(broker.url, "hq", "hq-secret-1", dsn, cfg.stores, ca_file=str(broker.ca),
                 client_id=cfg.broker.client_id).start()
    assert c.connected.wait(5)
    yield c
    c.stop()


def test_migrations_are_versioned_and_run_once(dsn):
    with psycopg.connect(dsn) as conn:
        assert current_version(conn) == 0
        assert migrate(conn) == [v for v, _, _ in MIGRATIONS]
        assert migrate(conn) == [] and current_version(conn) == MIGRATIONS[-1][0]


def test_a_kiosks_reports_land_once_and_a_resent_old_state_loses(tmp_path, broker, creds, hq, dsn):
    k = Kiosk(kiosk_config(chain_kiosk_config(tmp_path, broker, creds), base_dir=tmp_path), feed=False).start()
    try:
        from tests.helpers import labels_message as labels
        from tests.kiosk.feeds import heartbeat
        k.on_device("case-01", {"link": "up", "error": None})
        k.on_message("heartbeat", heartbeat({"cam0": 0}))
        k.on_message("labels", labels({"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "empty"}, seq=0))
        k.on_message("labels", labels({"r0c0": "ring", "r0c1": "empty", "r1c0": "watch", "r1c1": "empty"}, seq=1))
        k.tick()
        k.acknowledge(k.incidents()[0]["id"], "mia", "in the safe")
        k.run_count("mia", "closing")
        wait_sql(dsn, "SELECT state, ack_by FROM incidents WHERE store = 'zrh-01' AND slot = 'r0c1'",
                 ("acknowledged", "mia"))
        wait_sql(dsn, "SELECT kind, user_name FROM counts WHERE store = 'zrh-01'", ("closing", "mia"))
        wait_sql(dsn, "SELECT cameras->0->'model'->>'version' FROM devices WHERE store = 'zrh-01'", ("1.0.0",))
    finally:
        k.stop()
    with psycopg.connect(dsn) as conn:
        sent = conn.execute("SELECT COUNT(*), MAX(seq) FROM messages WHERE store = 'zrh-01'").fetchone()
        opened = conn.execute("SELECT m.id FROM messages m WHERE m.kind = 'incident' ORDER BY seq LIMIT 1").fetchone()
    # The broker delivers the first incident message again (QoS 1 is at-least-once): applied 0 times more,
    # and its older "open" state does not undo the acknowledgement.
    first = hq.stats["applied"]
    rows = []
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT seq FROM messages WHERE id = %s", opened).fetchone()
    old = {"schema_version": 1, "kind": "incident", "id": opened[0], "seq": rows[0], "store": "zrh-01", "ts": 1.0,
           "event": "opened", "incident": {"id": 1, "kind": "missing", "device": "case-01", "camera": "cam0",
                                           "slot": "r0c1", "state": "open", "opened_at": 1.0, "updated_at": 1.0,
                                           "reason": "x", "evidence_sha256": "0" * 64}}
    publish_raw(broker, "zrh-01", "gemsight/zrh-01/incident", json.dumps(old).encode())
    newer_id_older_seq = {**old, "id": uuid.uuid4().hex}
    publish_raw(broker, "zrh-01", "gemsight/zrh-01/incident", json.dumps(newer_id_older_seq).encode())
    wait_sql(dsn, "SELECT duplicates FROM stores WHERE id = 'zrh-01'", (1,))
    wait_sql(dsn, "SELECT applied FROM stores WHERE id = 'zrh-01'", (sent[0] + 1,))
    wait_sql(dsn, "SELECT state FROM incidents WHERE store = 'zrh-01' AND slot = 'r0c1'", ("acknowledged",))
    assert hq.stats["applied"] == first + 1 and hq.stats["duplicates"] == 1


def test_an_unknown_store_is_refused_and_counted(broker, hq, dsn, caplog):
    for i in range(3):
        publish_raw(broker, "ghost-9", "gemsight/ghost-9/count", json.dumps(count_message("ghost-9", i + 1)).encode())
    wait_sql(dsn, "SELECT n FROM intake WHERE reason = 'unknown store'", (3,))
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM stores WHERE id = 'ghost-9'").fetchone() == (0,)
    assert hq.stats["unknown store"] == 3


@pytest.mark.parametrize("payload, says", [
    (b"{not json", "not JSON"),
    (json.dumps({**count_message(), "seq": "one"}).encode(), "seq: 'one' is not of type 'integer'"),
    (json.dumps(count_message(store="gva-02")).encode(), "payload names store 'gva-02', its topic 'zrh-01'"),
    (json.dumps({**count_message(), "colour": "red"}).encode(), "Additional properties are not allowed"),
    (json.dumps(count_message()).replace('"schedule"', '"sch\\u0000edule"').encode(), "NUL character"),
])
def test_a_malformed_payload_is_one_line_and_skipped(broker, hq, dsn, caplog, payload, says):
    with caplog.at_level(logging.WARNING, logger="hq.consumer"):
        publish_raw(broker, "zrh-01", "gemsight/zrh-01/count", payload)
        publish_raw(broker, "zrh-01", "gemsight/zrh-01/count", json.dumps(count_message(seq=7)).encode())
        wait_sql(dsn, "SELECT applied FROM stores WHERE id = 'zrh-01'", (1,))    # the next one is not held up
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and says in lines[0] and "gemsight/zrh-01/count" in lines[0]
    wait_sql(dsn, "SELECT n FROM intake WHERE reason = 'malformed'", (1,))


def test_check_names_what_is_wrong():
    with pytest.raises(Refused, match="topic 'gemsight/zrh-01' is not"):
        check("gemsight/zrh-01", b"{}", KNOWN)
    with pytest.raises(Refused, match=r"over the \d+ byte limit"):
        check("gemsight/zrh-01/count", b" " * (300 * 1024), KNOWN)
    assert check("gemsight/zrh-01/count", json.dumps(count_message()).encode(), KNOWN)["seq"] == 1


def test_plaintext_is_refused_unless_insecure(tmp_path, broker, dsn):
    cfg = parse_config(hq_config_dict(tmp_path, broker, dsn))
    with pytest.raises(ConfigError, match=r"plaintext mqtt://127.0.0.1:\d+ is refused: use mqtts:// \(or --insecure"):
        Consumer(broker.plain_url, "hq", "hq-secret-1", dsn, cfg.stores)
    c = Consumer(broker.plain_url, "hq", "hq-secret-1", dsn, cfg.stores, insecure=True, client_id="hq-plain").start()
    try:
        assert c.connected.wait(5)
        publish_raw(broker, "gva-02", "gemsight/gva-02/count", json.dumps(count_message("gva-02")).encode())
        wait_sql(dsn, "SELECT applied FROM stores WHERE id = 'gva-02'", (1,))
    finally:
        c.stop()


def test_database_restart_is_survived(broker, hq, dsn, postgres, caplog):
    publish_raw(broker, "bsl-03", "gemsight/bsl-03/count", json.dumps(count_message("bsl-03", 1)).encode())
    wait_sql(dsn, "SELECT applied FROM stores WHERE id = 'bsl-03'", (1,))
    postgres.stop()
    for seq in (2, 3):
        publish_raw(broker, "bsl-03", "gemsight/bsl-03/count", json.dumps(count_message("bsl-03", seq)).encode())
    postgres.start()
    wait_sql(dsn, "SELECT applied, duplicates FROM stores WHERE id = 'bsl-03'", (3, 0), timeout=20)
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
