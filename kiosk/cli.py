"""``gemsight-kiosk``: run the store's kiosk, check its config and devices, manage users, verify the audit log.

    gemsight-kiosk run --config kiosk.yaml
    gemsight-kiosk check --config kiosk.yaml
    gemsight-kiosk example-config > kiosk.yaml
    gemsight-kiosk user add NAME --role viewer|manager|admin [--password-stdin] --config kiosk.yaml
    gemsight-kiosk user list|disable|enable|passwd|end-sessions [NAME] --config kiosk.yaml
    gemsight-kiosk audit verify --config kiosk.yaml
    gemsight-kiosk incidents --config kiosk.yaml [--json]
"""
from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
import threading
import time
from contextlib import closing

import zmq

from edge.cli_support import run_main, setup_logging
from edge.config.credentials import resolve
from edge.errors import ConfigError, LinkError, MessageError
from kiosk.auth import ROLES
from kiosk.config import KioskConfig, load_config
from kiosk.example import EXAMPLE

logger = logging.getLogger(__name__)

PROG = "gemsight-kiosk"
DEFAULT_CONFIG = "/etc/gemsight/kiosk.yaml"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command line of ``gemsight-kiosk``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"kiosk config (default {DEFAULT_CONFIG})")
        return p

    p = with_config(sub.add_parser("run", help="serve the page and the API, subscribed to every device"))
    p.add_argument("--insecure", action="store_true", help="serve plain HTTP off loopback (without web.tls_cert/"
                                                           "web.tls_key): passwords and cookies cross the network "
                                                           "in clear")
    p = with_config(sub.add_parser("check", help="validate the config and reach every device once"))
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="per device (default 3)")
    sub.add_parser("example-config", help="print a commented example kiosk.yaml")
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    p = with_config(user.add_parser("add", help="create a user or replace its password and role"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    with_config(user.add_parser("list", help="list users, their role, state and live sessions"))
    for verb, what in (("disable", "disable a user (ends the sessions)"), ("enable", "enable a disabled user"),
                       ("passwd", "reset a user's password (ends the sessions)"),
                       ("end-sessions", "end every session of a user")):
        p = with_config(user.add_parser(verb, help=what))
        p.add_argument("name", metavar="NAME")
        if verb == "passwd":
            p.add_argument("--password-stdin", action="store_true", help="read it from the first line of stdin")
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    with_config(audit.add_parser("verify", help="check the audit log's hash chain"))
    p = with_config(sub.add_parser("incidents", help="list the incidents in the history (oldest first)"))
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--limit", type=int, default=1000)
    return parser


def _bind(config: KioskConfig) -> socket.socket:
    host, port = config.web.host, config.web.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def exposure(config: KioskConfig, insecure: bool) -> dict[str, str]:
    """uvicorn's TLS options; off loopback, TLS is required unless ``insecure`` (then a loud warning).

    Raises:
        ConfigError: off loopback without TLS or ``--insecure``; a TLS file that cannot be read.
    """
    web = config.web
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web: tls_cert and tls_key go together (give both or neither)")
    if web.tls:
        files = {}
        for name in ("tls_cert", "tls_key"):
            path = resolve(getattr(web, name), f"web.{name}")
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"web.{name}: cannot read {path} ({exc.strerror or exc})") from None
            files[name] = str(path)
        return {"ssl_certfile": files["tls_cert"], "ssl_keyfile": files["tls_key"]}
    if web.loopback:
        return {}
    if not insecure:
        raise ConfigError(f"web.host {web.host} is not loopback: set web.tls_cert and web.tls_key to serve HTTPS, "
                          "or pass --insecure to send passwords and session cookies in clear")
    logger.warning("INSECURE: serving plain HTTP on %s (--insecure): anyone on the network can read passwords and "
                   "take over sessions; set web.tls_cert and web.tls_key", web.host)
    return {}


def cmd_run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    import uvicorn  # noqa: PLC0415 - only `run` needs the web server

    from edge.loop.sdnotify import SdNotifier  # noqa: PLC0415
    from kiosk.service import Kiosk  # noqa: PLC0415
    from kiosk.web import create_app  # noqa: PLC0415

    config = load_config(args.config)
    tls = exposure(config, args.insecure)
    sock = _bind(config)
    kiosk = Kiosk(config)
    if kiosk.history.user_count() == 0:
        logger.warning("no users yet: add one with `%s user add NAME --role manager --config %s`", PROG, args.config)
    server = uvicorn.Server(uvicorn.Config(create_app(kiosk, stop_kiosk=True), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=2, lifespan="on", **tls))
    host, port = sock.getsockname()[:2]
    url = f"{'https' if tls else 'http'}://{'[' + host + ']' if ':' in host else host}:{port}/"
    notifier = SdNotifier()

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            logger.info("kiosk %s serving at %s", config.store, url)
            print(f"gemsight kiosk: {url}", flush=True)
            notifier.ready(f"serving {url}")

    kiosk.start()
    threading.Thread(target=announce, name="gemsight-kiosk-announce", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        notifier.stopping()
        kiosk.hub.close_all()
        kiosk.stop()
    return 0


def _check_device(config: KioskConfig, device, timeout_s: float) -> str:
    from edge.link import messages  # noqa: PLC0415
    from edge.link.client import ClientKeys, Link  # noqa: PLC0415

    keys = ClientKeys.load(device.server_key, config.curve.client_secret_key) if config.curve else None
    with Link(zmq.SUB, device.labels, keys, plaintext=keys is None, device=device.id) as sub:
        if not sub.wait_connected(timeout_s):
            raise MessageError(f"{device.id}: no handshake with {device.labels} within {timeout_s:g} s "
                               "(device down or unreachable)")
    if not device.snapshot:
        return f"{device.id}: link ok ({'CURVE' if keys else 'plaintext'}), no snapshot endpoint"
    with Link(zmq.REQ, device.snapshot, keys, plaintext=keys is None, device=device.id) as req:
        data = req.request(messages.encode({"camera": None}), timeout_s)
        if data is None:
            raise MessageError(f"{device.id}: snapshot endpoint {device.snapshot} did not answer "
                               f"within {timeout_s:g} s")
        reply = messages.parse_snapshot(data)
    cams = sorted(reply.get("cameras", {}))
    unplanned = sorted(set(cams) - set(device.cameras))
    missing = sorted(set(device.cameras) - set(cams))
    note = (f"; cameras without labels yet: {missing}" if missing else "") + \
           (f"; cameras not in the planogram: {unplanned}" if unplanned else "")
    for cam in sorted(set(cams) & set(device.cameras)):
        seen = {s["name"] for s in reply["cameras"][cam]["slots"]}
        unknown = sorted(set(device.cameras[cam].slots) - seen)
        if unknown:
            note += f"; {cam}: planogram slots the camera does not report: {unknown}"
    return f"{device.id}: ok ({'CURVE' if keys else 'plaintext'}, snapshot with {len(cams)} camera(s){note})"


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config, then reach every device once; 1 if any device failed."""
    config = load_config(args.config)
    print(f"{args.config}: valid ({len(config.devices)} devices, "
          f"{sum(len(c.slots) for d in config.devices for c in d.cameras.values())} slots)")
    failed = 0
    for device in config.devices:
        try:
            print(_check_device(config, device, args.timeout))
        except (LinkError, MessageError, ConfigError) as exc:
            failed += 1
            print(f"{device.id}: FAILED: {exc}")
    return 1 if failed else 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        raise ConfigError("the two passwords differ")
    return password


def cmd_user(args: argparse.Namespace) -> int:
    """``user add|list|disable|enable|passwd|end-sessions`` (the same verbs as the page's user admin)."""
    from kiosk import auth  # noqa: PLC0415
    from kiosk.history import History  # noqa: PLC0415

    config = load_config(args.config)
    verb, now = args.user_command, time.time()
    password = _password(args) if verb in ("add", "passwd") else None
    with closing(History(config.state_dir)) as history:
        if verb == "add":
            auth.add_user(history, args.name, args.role, password, now)
            print(f"user {args.name} ({args.role}) saved in {history.path}")
        elif verb == "list":
            rows = history.users()
            for u in rows:
                print(f"{u['name']:<20} {u['role']:<8} {'disabled' if u['disabled'] else 'active':<8} "
                      f"{u['sessions']} session(s)")
            print(f"{len(rows)} user(s)")
        elif verb in ("disable", "enable"):
            auth.set_disabled(history, args.name, verb == "disable", now, "cli")
            print(f"user {args.name} {verb}d")
        elif verb == "passwd":
            auth.set_password(history, args.name, password, now, "cli")
            print(f"password of {args.name} reset; its sessions ended")
        else:
            print(f"user {args.name}: {auth.end_sessions(history, args.name, now, 'cli')} session(s) ended")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from kiosk.history import History  # noqa: PLC0415

    config = load_config(args.config)
    with closing(History(config.state_dir, readonly=True)) as history:
        n = history.verify_audit()
    print(f"audit log {history.path}: {n} rows, hash chain intact")
    return 0


def cmd_incidents(args: argparse.Namespace) -> int:
    """Print the history's incidents (works beside a running kiosk: the database is read-only here)."""
    import json  # noqa: PLC0415

    from kiosk.evidence import EvidenceStore  # noqa: PLC0415
    from kiosk.history import History  # noqa: PLC0415
    from kiosk.words import when  # noqa: PLC0415

    config = load_config(args.config)
    tz = config.hours.timezone if config.hours else None
    store = EvidenceStore(config.state_dir, config.policies.evidence_days, config.policies.evidence_mb)
    with closing(History(config.state_dir, readonly=True)) as history:
        rows = list(reversed(history.incidents(limit=args.limit)))
    for r in rows:
        pictures = store.items(r["id"])
        if args.json:
            print(json.dumps({**r, "evidence_files": pictures}, sort_keys=True))
            continue
        ack = f"; acknowledged by {r['ack_by']}: {r['ack_note']}" if r["ack_by"] else ""
        end = (r["evidence"] or {}).get("resolution")
        place = "/".join(x for x in (r["device"], r["camera"], r["slot"]) if x)
        print(f"#{r['id']} {r['kind']:<8} {r['state']:<12} {when(r['opened_at'], tz)} {place} "
              f"{r['reason']}{ack}" + (f" (resolved: {end})" if end else ""))
        for p in pictures:
            files = "  ".join(f"{w}: {path}" for w, path in sorted(p["files"].items()))
            print(f"    evidence {p['camera']}/{p['slot']}: {files or 'none (' + str(p['error']) + ')'}")
    if not args.json:
        print(f"{len(rows)} incident(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gemsight-kiosk``."""
    args = get_args_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "example-config":
        sys.stdout.write(EXAMPLE)
        return 0
    commands = {"run": cmd_run, "check": cmd_check, "incidents": cmd_incidents}
    if args.command == "user":
        func = cmd_user
    elif args.command == "audit":
        func = cmd_audit_verify
    else:
        func = commands[args.command]
    return run_main(lambda: func(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
