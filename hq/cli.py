"""``gemsight-hq``: the chain's headquarters (broker into PostgreSQL, the chain's page), like the kiosk.

    gemsight-hq run --config hq.yaml [--insecure]
    gemsight-hq check --config hq.yaml [--insecure]
    gemsight-hq example-config > hq.yaml
    gemsight-hq user add NAME --role viewer|regional|admin [--store ID ... | --region NAME] [--password-stdin]
    gemsight-hq user disable|enable NAME
"""
from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading

from edge.cli_support import run_main, setup_logging
from edge.errors import ConfigError, GemsightError
from hq.config import EXAMPLE, HqConfig, load_config
from hq.users import ROLES
from kiosk.chain import broker_address, read_password

logger = logging.getLogger(__name__)

PROG = "gemsight-hq"
DEFAULT_CONFIG = "/etc/gemsight/hq.yaml"


class HqError(GemsightError):
    """Headquarters cannot reach its database or broker."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command line of ``gemsight-hq``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, insecure: bool = False) -> argparse.ArgumentParser:
        p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"hq config (default {DEFAULT_CONFIG})")
        if insecure:
            p.add_argument("--insecure", action="store_true", help="allow a plaintext mqtt:// broker (loopback only)")
        return p

    with_config(sub.add_parser("run", help="consume the broker into PostgreSQL and serve the chain's page"), True)
    p = with_config(sub.add_parser("check", help="validate the config, reach the database and the broker once"), True)
    p.add_argument("--timeout", type=float, default=5.0, metavar="S")
    sub.add_parser("example-config", help="print a commented example hq.yaml")
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    p = with_config(user.add_parser("add", help="create a user or replace its password, role and stores"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--store", action="append", default=[], metavar="ID", help="a regional manager's store (repeat)")
    p.add_argument("--region", default=None, help="a regional manager's stores: every store of this region")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    for verb, what in (("disable", "refuse a user's logins and end their sessions"), ("enable", "allow a user again")):
        with_config(user.add_parser(verb, help=what)).add_argument("name", metavar="NAME")
    return parser


def database_dsn(cfg: HqConfig) -> str:
    return read_password(cfg.database_file, "database DSN")


def _connect_db(dsn: str):
    import psycopg  # noqa: PLC0415

    try:
        return psycopg.connect(dsn, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise HqError(f"cannot reach the database: {' '.join(str(exc).split())}") from None


def consumer_for(cfg: HqConfig, insecure: bool):
    from hq.consumer import Consumer  # noqa: PLC0415

    b = cfg.broker
    return Consumer(b.url, b.user, read_password(b.password_file, "broker password"), database_dsn(cfg), cfg.stores,
                    ca_file=b.ca_file, client_id=b.client_id, insecure=insecure)


def cmd_run(args: argparse.Namespace) -> int:
    import psycopg  # noqa: PLC0415
    import uvicorn  # noqa: PLC0415

    from hq.web import create_app  # noqa: PLC0415

    cfg = load_config(args.config)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    consumer = consumer_for(cfg, args.insecure)
    try:
        consumer.start()
    except psycopg.OperationalError as exc:
        raise HqError(f"cannot reach the database: {' '.join(str(exc).split())}") from None
    try:
        uvicorn.run(create_app(cfg, consumer.dsn), host=cfg.web.host, port=cfg.web.port, log_level="warning")
    finally:
        consumer.stop()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt  # noqa: PLC0415

    from hq.migrations import MIGRATIONS, current_version  # noqa: PLC0415

    cfg = load_config(args.config)
    b = cfg.broker
    host, port, tls = broker_address(b.url, args.insecure)
    password = read_password(b.password_file, "broker password")
    with _connect_db(database_dsn(cfg)) as conn:
        version = current_version(conn)
    print(f"config {args.config}: {len(cfg.stores)} stores; database reached, schema version {version} "
          f"of {MIGRATIONS[-1][0]}{' (run migrates it)' if version < MIGRATIONS[-1][0] else ''}")
    done, result = threading.Event(), []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{b.client_id}-check")
    c.username_pw_set(b.user, password)
    if tls:
        c.tls_set(ca_certs=b.ca_file)
    c.on_connect = lambda cl, ud, flags, rc, props: (result.append(rc), done.set())
    try:
        c.connect(host, port, keepalive=10)
    except (OSError, ValueError) as exc:
        raise HqError(f"cannot reach the broker {host}:{port}: {exc}") from None
    c.loop_start()
    try:
        if not done.wait(args.timeout):
            raise HqError(f"the broker {host}:{port} did not answer within {args.timeout} s")
        if result[0].is_failure:
            raise HqError(f"the broker {host}:{port} refused {b.user}: {result[0]}")
    finally:
        c.loop_stop()
        c.disconnect()
    print(f"broker {host}:{port} ({'TLS' if tls else 'PLAINTEXT'}): logged in as {b.user}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from hq.migrations import migrate  # noqa: PLC0415
    from hq.users import add_user  # noqa: PLC0415

    cfg = load_config(args.config)
    stores = list(args.store)
    if args.region is not None:
        region = [s.id for s in cfg.stores if s.region == args.region]
        if not region:
            raise ConfigError(f"no store of the config is in region {args.region!r}")
        stores += region
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    with _connect_db(database_dsn(cfg)) as conn:
        migrate(conn)
        replaced = add_user(conn, args.name, args.role, password, stores, known=[s.id for s in cfg.stores])
    print(f"user {args.name} ({args.role}{': ' + ', '.join(sorted(set(stores))) if stores else ''}) "
          f"{'replaced' if replaced else 'created'}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    from hq.migrations import migrate  # noqa: PLC0415
    from hq.users import set_disabled  # noqa: PLC0415

    cfg = load_config(args.config)
    with _connect_db(database_dsn(cfg)) as conn:
        migrate(conn)
        ended = set_disabled(conn, args.name, args.user_command == "disable")
    print(f"user {args.name} {args.user_command}d" + (f"; {ended} sessions ended" if ended else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        if args.command == "example-config":
            sys.stdout.write(EXAMPLE)
            return 0
        if args.command == "run":
            return cmd_run(args)
        if args.command == "check":
            return cmd_check(args)
        return cmd_user_add(args) if args.user_command == "add" else cmd_user_disable(args)

    return run_main(body, PROG)
