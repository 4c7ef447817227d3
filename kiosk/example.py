"""The commented example ``kiosk.yaml`` that ``gemsight-kiosk example-config`` prints."""

EXAMPLE = """\
# gemsight kiosk: one store, its devices and their planogram (gemsight-kiosk example-config).
store: "Bahnhofstrasse 12"
state_dir: /var/lib/gemsight/kiosk
# The kiosk's client certificate (make it with `gemsight-edge keys client kiosk --out DIR` and add its
# public half to every device's allow-list). A bare name is read from $CREDENTIALS_DIRECTORY.
curve:
  client_secret_key: kiosk.key_secret
devices:
  - id: case-01
    labels: tcp://case-01.local:5555
    snapshot: tcp://case-01.local:5556
    server_key: case-01.key          # the device's public certificate, pinned
    cameras:
      cam0:
        title: "Window, left"
        empty_grace_s: 300            # this case: 5 minutes
        slots:
          r0c0: ring
          r0c1: ring
          r0c2: necklace
          r1c0: watch
          r1c1: sold
          r1c2: empty by design
policies:
  empty_grace_s: 600      # 10 minutes before a missing piece is an incident
  burst_slots: 2          # a third slot of one case emptied within burst_window_s: immediate alarm
  burst_window_s: 10
  incidents: states       # from the device's slot states (docs/kiosk-states.md); `categories`: the old rule
  swap_confirm_s: 15      # a slot reads `changed` this long: another piece is in it
  category_incidents: false   # a category other than the planogram's is a hint, not an incident
  evidence_days: 90       # evidence pictures kept this long ...
  evidence_mb: 500        # ... and at most this much (oldest pruned)
  heartbeat_s: 1.0
  stale_heartbeats: 3
hours:
  open: "09:30"
  close: "18:30"
  days: [mon, tue, wed, thu, fri, sat]
  timezone: Europe/Zurich
web:
  host: 127.0.0.1
  port: 8470
  # Off loopback the kiosk serves HTTPS (or refuses to start unless run with --insecure):
  # host: 0.0.0.0
  # tls_cert: /etc/gemsight/kiosk.crt
  # tls_key: kiosk-tls.key            # a bare name: from $CREDENTIALS_DIRECTORY
  # trusted_proxies: [10.0.0.5]       # believe X-Forwarded-For from these only (none by default)
# One POST per incident when it opens, escalates and resolves, signed (docs/kiosk-store-manager.md):
# webhook:
#   url: http://127.0.0.1:8471/gemsight
#   secret: webhook.key
#   escalate_after_min: 15
#   quiet_hours: {start: "20:00", end: "07:00"}
retention_days: 400
"""
