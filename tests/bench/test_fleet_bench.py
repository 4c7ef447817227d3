"""``bench/fleet.py`` in a tiny configuration (6 stores, 10 s): the real broker, database and
``gemsight-hq run``, the three faults, and a report whose counts say nothing was lost or applied twice."""
import json
import shutil

import pytest

from bench import fleet


@pytest.mark.slow
def test_fleet_bench_tiny(tmp_path):
    if not shutil.which("mosquitto") and not shutil.which("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    out = tmp_path / "fleet.json"
    rc = fleet.main(["--stores", "6", "--seconds", "10", "--procs", "1", "--rate", "3", "--out", str(out)])
    r = json.loads(out.read_text())
    assert rc == 0 and r["sent"] == r["in_postgres"] > 100 and r["lost"] == 0 and r["applied_twice"] == 0
    assert set(r["faults"]) == {"store_offline_60_min", "broker_restart", "postgres_restart"}
    assert all(f["lost"] == 0 and f["applied_twice"] == 0 for f in r["faults"].values())
    assert r["faults"]["store_offline_60_min"]["sent"] > 0 and r["hq"]["rss_peak_mb"] > 10
    assert r["lag_s"]["p50"] is not None and r["msgs_per_s_applied"] > 0
