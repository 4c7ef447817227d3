"""``gemsight-deploy``: keys, signed bundles, flashing, rollback, status, engine build, install."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.cli_support import run_main, setup_logging

PROG = "gemsight-deploy"
MAX_BATCH_HELP = "TensorRT engine batch (default: every slot of every camera in edge.yaml)"


def _add_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pubkey", action="append", default=[], metavar="PUB",
                   help="trusted public key (repeatable); default: the *.pub files in --pubkey-dir")
    p.add_argument("--pubkey-dir", type=Path, default=None,
                   help="directory of trusted *.pub keys (default <root>/etc/gemsight/keys)")


def _add_health(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-restart", action="store_true", help="do not restart the edge service after switching")
    p.add_argument("--heartbeat-endpoint", default=None,
                   help="ZeroMQ endpoint to hear the edge heartbeat on (default: publish.endpoint of edge.yaml, "
                        "when the service was restarted)")
    p.add_argument("--heartbeat-timeout", type=float, default=60.0, help="seconds to wait for a heartbeat")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(PROG, add_help=add_help, description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make an ed25519 signing key pair")
    p.add_argument("--out", type=Path, required=True, help="directory for NAME.key (0600) and NAME.pub")
    p.add_argument("--name", default="gemsight-signing", help="file name stem of the pair")

    p = sub.add_parser("bundle", help="pack a calibration output into a signed .gsb bundle")
    p.add_argument("model_dir", type=Path, metavar="CALIB_OUT")
    p.add_argument("--key", type=Path, required=True, help="ed25519 private key (PEM)")
    p.add_argument("--version", default=None, help="bundle version, semver (default: the manifest's version)")
    p.add_argument("--out", type=Path, required=True, help="NAME.gsb to write")

    p = sub.add_parser("verify", help="check a bundle's signature and every checksum")
    p.add_argument("bundle", type=Path)
    p.add_argument("--root", type=Path, default=Path("/"), help="device root whose keys to trust")
    _add_keys(p)

    p = sub.add_parser("flash", help="install a bundle and make it current (or on a remote device with --ssh)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--root", type=Path, default=Path("/"))
    _add_keys(p)
    p.add_argument("--allow-downgrade", action="store_true", help="accept a version lower than the current one")
    _add_health(p)
    p.add_argument("--runtime", default=None, help="runtime for the smoke test (default: runtime.name of edge.yaml)")
    p.add_argument("--precision", default=None, help="precision for engine and smoke test (default: edge.yaml)")
    p.add_argument("--max-batch", type=int, default=None, help=MAX_BATCH_HELP)
    p.add_argument("--keep", type=int, default=3, help="installed versions to keep (at least 2)")
    p.add_argument("--reserve-mb", type=float, default=64, help="free space (MB) that must remain after unpacking")
    p.add_argument("--ssh", default=None, metavar="USER@HOST", help="flash a remote device over ssh instead")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="ssh/scp -o option (repeatable)")
    p.add_argument("--ssh-port", type=int, default=None)
    p.add_argument("--remote-command", default="gemsight-deploy", help="gemsight-deploy on the remote device")
    p.add_argument("--remote-dir", default="/var/tmp", help="where the bundle is copied on the remote device")
    p.add_argument("--sudo", action="store_true", help="run the remote flash with sudo -n")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("pull-crops", help="copy a device's collected crops over ssh into the trainer's layout")
    p.add_argument("device", help="the device's id (messages), e.g. case-01")
    p.add_argument("--ssh", required=True, metavar="USER@HOST", help="the device over ssh, as for flash --ssh")
    p.add_argument("--out", type=Path, required=True, help="DIR/<class>/*.jpg + DIR/manifest.jsonl (merged)")
    p.add_argument("--collect-dir", default=None,
                   help="the device's collect folder (collect.dir of its edge.yaml; default "
                        "/var/lib/gemsight/edge/collect, the edge's state folder under systemd)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="ssh -o option (repeatable)")
    p.add_argument("--ssh-port", type=int, default=None)
    p.add_argument("--sudo", action="store_true", help="read the folder with sudo -n on the device")

    from deploy.rollout import add_parser as add_rollout  # noqa: PLC0415 - its imports are light
    add_rollout(sub, _add_keys, _add_health)

    p = sub.add_parser("rollback", help="make the previous version current again")
    p.add_argument("--root", type=Path, default=Path("/"))
    _add_keys(p)
    _add_health(p)

    p = sub.add_parser("status", help="installed versions, current, previous, engine cache")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--verify", action="store_true", help="re-hash every installed file")
    _add_keys(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("build-engine", help="build the TensorRT engine of the current model (boot-time unit)")
    p.add_argument("model_dir", type=Path, nargs="?", default=None,
                   help="a model directory to build for (default: the current version under --root)")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="engine cache (default: $GEMSIGHT_ENGINE_CACHE, edge.yaml, <root>/var/lib/gemsight/engines)")
    p.add_argument("--max-batch", type=int, default=None, help=MAX_BATCH_HELP)
    p.add_argument("--precision", default=None)
    p.add_argument("--rebuild", action="store_true",
                   help="build the engine even when a cached one still loads (e.g. after changing TensorRT settings)")

    p = sub.add_parser("install", help="lay out user, directories, config and systemd units on a root")
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--device", default=None, help="device name for a new edge.yaml (default: host name)")
    p.add_argument("--pubkey", action="append", default=[], metavar="PUB", help="trusted key to install")
    p.add_argument("--bin-dir", type=Path, default=None,
                   help="where gemsight-edge/gemsight-deploy are (default: this Python's bin directory)")
    p.add_argument("--systemd-version", type=int, default=None,
                   help="systemd version of the target (default: asked from systemctl on /, else 252)")
    p.add_argument("--no-systemctl", action="store_true", help="on /: do not daemon-reload/enable the units")
    p.add_argument("--venv", type=Path, default=None,
                   help="create this venv for the units (e.g. /opt/gemsight/venv); on a Jetson with "
                        "--system-site-packages, so JetPack's TensorRT and GStreamer OpenCV stay importable")
    p.add_argument("--system-site-packages", dest="system_site_packages", action="store_true", default=None,
                   help="let the venv see the system's packages (default: only on a Jetson)")
    p.add_argument("--no-system-site-packages", dest="system_site_packages", action="store_false")
    p.add_argument("--pip-install", action="append", default=[], metavar="REQ",
                   help="pip install this into the new venv (repeatable), e.g. 'gemsight[jetson]' or a wheel")
    return parser


def _print_flash(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.__dict__, indent=2, default=str))
        return
    if result.outcome == "already-current":
        print(f"{result.version} is already current; nothing done")
        return
    print(f"flashed {result.version} (was {result.replaced or 'nothing'}), signed by {result.key_id}")
    if result.smoke:
        print(f"smoke test: {result.smoke['backend']} {result.smoke['precision']}")
    for step, seconds in result.timings.items():
        print(f"  {step:<8} {seconds * 1000:8.1f} ms")


def _print_status(st: dict) -> None:
    print(f"root      {st['root']}")
    print(f"current   {st['current'] or '-'}")
    print(f"previous  {st['previous'] or '-'}")
    if st["busy"]:
        print(f"busy      {st['busy']}")
    for action in st["recovered"]:
        print(f"recovered {action}")
    print("installed" + ("" if st["installed"] else "  none"))
    for v in st["installed"]:
        mark = "*" if v["version"] == st["current"] else ("<" if v["version"] == st["previous"] else " ")
        state = "ok" if v["complete"] else f"DAMAGED: {v['problem']}"
        print(f"  {mark} {v['version']:<16} {v.get('created') or '':<21} {v['bytes'] / 1e6:7.1f} MB  {state}")
    print("engines" + ("" if st["engines"] else "    none"))
    for e in st["engines"]:
        print(f"    {e['name']}  {e['precision']} batch {e['max_batch']}  {e['bytes'] / 1e6:.1f} MB  {e['modified']}")
        print(f"      built for {e['built_for']}")


def _run(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        from deploy.keys import generate_keypair, key_id_of, load_private_key  # noqa: PLC0415
        priv, pub = generate_keypair(args.out, args.name)
        print(f"private key {priv} (keep it secret)\npublic key  {pub}\nkey id      "
              f"{key_id_of(load_private_key(priv).public_key())}")
        return 0
    if args.command == "bundle":
        from deploy.bundle import create_bundle  # noqa: PLC0415
        print(create_bundle(args.model_dir, args.key, args.out, args.version))
        return 0
    if args.command == "verify":
        from deploy.keys import trusted_keys  # noqa: PLC0415
        from deploy.layout import DeviceLayout  # noqa: PLC0415
        from deploy.verify import verify_bundle  # noqa: PLC0415
        keys = trusted_keys(args.pubkey, args.pubkey_dir or DeviceLayout(args.root).keys_dir)
        vb = verify_bundle(args.bundle, keys)
        print(f"{args.bundle}: OK, version {vb.version}, model {vb.manifest.name} {vb.manifest.version}, "
              f"{len(vb.members)} files, {vb.payload_bytes / 1e6:.1f} MB, signed by {vb.key_id}")
        return 0
    if args.command == "flash":
        if args.ssh:
            from deploy.remote import remote_flash  # noqa: PLC0415
            return remote_flash(args)
        from deploy.flash import FlashOptions, flash  # noqa: PLC0415
        opts = FlashOptions(pubkeys=args.pubkey, pubkey_dir=args.pubkey_dir, allow_downgrade=args.allow_downgrade,
                            restart=not args.no_restart, heartbeat_endpoint=args.heartbeat_endpoint,
                            heartbeat_timeout=args.heartbeat_timeout, runtime=args.runtime, precision=args.precision,
                            max_batch=args.max_batch, keep=args.keep, reserve_bytes=int(args.reserve_mb * 1e6))
        _print_flash(flash(args.bundle, args.root, opts), args.json)
        return 0
    if args.command == "pull-crops":
        from deploy.pull import DEFAULT_COLLECT_DIR, pull_crops  # noqa: PLC0415
        got = pull_crops(args.device, args.ssh, args.out, collect_dir=args.collect_dir or DEFAULT_COLLECT_DIR,
                         port=args.ssh_port,
                         options=args.ssh_option, sudo=args.sudo)
        per_class = ", ".join(f"{c} {n}" for c, n in sorted(got.new.items())) or "none"
        print(f"pulled {got.total} new crop(s) from {args.device} into {got.out} ({per_class}); "
              f"{got.already} already there, {got.lines} manifest line(s) added")
        return 0
    if args.command == "rollout":
        from deploy.rollout import run_cli  # noqa: PLC0415
        return run_cli(args)
    if args.command == "rollback":
        from deploy.flash import FlashOptions  # noqa: PLC0415
        from deploy.manage import rollback  # noqa: PLC0415
        opts = FlashOptions(pubkeys=args.pubkey, pubkey_dir=args.pubkey_dir, restart=not args.no_restart,
                            heartbeat_endpoint=args.heartbeat_endpoint, heartbeat_timeout=args.heartbeat_timeout)
        out = rollback(args.root, opts)
        print(f"rolled back: current {out['current']}, previous {out['previous']}")
        return 0
    if args.command == "status":
        from deploy.manage import status  # noqa: PLC0415
        st = status(args.root, args.verify, args.pubkey, args.pubkey_dir)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            _print_status(st)
        return 0 if all(v["complete"] for v in st["installed"]) else 1
    if args.command == "build-engine":
        from deploy.manage import build_engine  # noqa: PLC0415
        engine = build_engine(args.root, args.max_batch, args.precision, args.model_dir, args.cache_dir,
                              rebuild=args.rebuild)
        print(engine or "no engine to build (no TensorRT here, or no model installed)")
        return 0
    if args.command == "install":
        from deploy.install import install  # noqa: PLC0415
        for line in install(args.root, device=args.device, pubkeys=args.pubkey, bin_dir=args.bin_dir,
                            systemd_version=args.systemd_version, systemctl=not args.no_systemctl,
                            venv=args.venv, system_site_packages=args.system_site_packages,
                            pip_install=args.pip_install):
            print(line)
        return 0
    raise AssertionError(args.command)  # argparse rejects unknown commands first


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_main(lambda: _run(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
