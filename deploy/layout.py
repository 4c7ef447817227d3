"""Where things live on a device, the ``current``/``previous`` links, and deploy's own state.

Everything is relative to a root (``/`` on a device, a temporary directory in tests)::

    <root>/etc/gemsight/edge.yaml                 device config (edge/config/device.py)
    <root>/etc/gemsight/gemsight.env              environment for the units
    <root>/etc/gemsight/keys/*.pub                public keys bundles must be signed with
    <root>/etc/gemsight/credentials/              edge secrets (0700), LoadCredential= of the edge unit,
                                                  among them server.key_secret (the device's CURVE key)
    <root>/etc/gemsight/server.key                the device's CURVE public key: give it to kiosks (pinned)
    <root>/etc/gemsight/clients/*.key             client public keys the edge admits (publish.curve.allowed_clients)
    <root>/etc/gemsight/deploy/                   deploy's own CURVE client key (0700), to hear the heartbeat
    <root>/var/lib/gemsight/models/<version>/     one installed bundle each (payload + bundle.json,
                                                  SHA256SUMS, SHA256SUMS.sig)
    <root>/var/lib/gemsight/models/current        -> <version>   (relative symlink, switched by rename)
    <root>/var/lib/gemsight/models/previous       -> <version>   (what rollback returns to)
    <root>/var/lib/gemsight/engines/              TensorRT engine cache (calibration.tensorrt)
    <root>/var/lib/gemsight/edge/                 the edge service's own state (StateDirectory=)
    <root>/var/lib/gemsight/deploy/lock           flock: one deploy operation at a time
    <root>/var/lib/gemsight/deploy/journal.json   the operation in progress (absent when none)
    <root>/var/lib/gemsight/deploy/history.jsonl  one JSON line per finished operation

Links are relative so a root prepared in a directory (an image build, a test) stays valid when
mounted at ``/``. Anything in ``models/`` whose name starts with ``.`` is a leftover of an
interrupted operation and is removed by the next one (or by ``status``).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

from deploy.bundle import SemVer
from edge.atomic import fsync_dir, write_atomic
from edge.errors import BundleError

logger = logging.getLogger(__name__)

CURRENT = "current"
PREVIOUS = "previous"
LINKS = (CURRENT, PREVIOUS)
TEMP_PREFIX = "."


class DeviceLayout:
    """Paths of a device root; cheap to make, touches nothing until asked."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)
        self.state_dir = self.root / "var/lib/gemsight"
        self.models_dir = self.state_dir / "models"
        self.engines_dir = self.state_dir / "engines"
        self.edge_state_dir = self.state_dir / "edge"
        self.deploy_dir = self.state_dir / "deploy"
        self.lock_path = self.deploy_dir / "lock"
        self.journal_path = self.deploy_dir / "journal.json"
        self.history_path = self.deploy_dir / "history.jsonl"
        self.etc_dir = self.root / "etc/gemsight"
        self.keys_dir = self.etc_dir / "keys"
        self.credentials_dir = self.etc_dir / "credentials"
        self.server_public_path = self.etc_dir / "server.key"
        self.clients_dir = self.etc_dir / "clients"
        self.deploy_key_dir = self.etc_dir / "deploy"
        self.deploy_key_path = self.deploy_key_dir / "gemsight-deploy.key_secret"
        self.config_path = self.etc_dir / "edge.yaml"
        self.env_path = self.etc_dir / "gemsight.env"
        self.unit_dir = self.root / "etc/systemd/system"
        self.sysusers_path = self.root / "usr/lib/sysusers.d/gemsight.conf"

    @property
    def is_live_root(self) -> bool:
        """True when the root is this machine's ``/`` (systemd and users are real then)."""
        return self.root.resolve() == Path("/")

    def engine_cache(self, configured: str | Path | None = None) -> Path:
        """The engine cache: the config's ``engine_cache`` (an absolute device path, under the root)
        or ``<root>/var/lib/gemsight/engines``."""
        if not configured:
            return self.engines_dir
        path = Path(configured)
        return self.root / path.relative_to("/") if path.is_absolute() else self.root / configured

    def ensure_state_dirs(self) -> None:
        """Create the directories deploy writes to (models, engines, deploy state)."""
        for d in (self.models_dir, self.engines_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.deploy_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- versions and links ------------------------------------------------------------------
    def version_dir(self, version: str) -> Path:
        SemVer.parse(version)  # a version is also a directory name: only semver characters
        return self.models_dir / version

    def link(self, name: str) -> str | None:
        """The version a link points at, ``None`` if the link is absent."""
        try:
            target = os.readlink(self.models_dir / name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise BundleError(f"{self.models_dir / name}: exists but is not a symbolic link") from exc
            raise
        return Path(target).name

    def current(self) -> str | None:
        return self.link(CURRENT)

    def previous(self) -> str | None:
        return self.link(PREVIOUS)

    def installed(self) -> list[str]:
        """Installed version directories, oldest first by semantic version."""
        if not self.models_dir.is_dir():
            return []
        found = []
        for p in self.models_dir.iterdir():
            if p.name in LINKS or p.name.startswith(TEMP_PREFIX) or p.is_symlink() or not p.is_dir():
                continue
            try:
                found.append((SemVer.parse(p.name), p.name))
            except BundleError:
                logger.warning("%s: not a version directory, ignored", p)
        return [name for _, name in sorted(found)]

    def leftovers(self) -> list[Path]:
        """Temporary entries an interrupted operation left in ``models/``."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p for p in self.models_dir.iterdir() if p.name.startswith(TEMP_PREFIX))

    def temp_path(self, purpose: str) -> Path:
        """A fresh hidden name in ``models/`` (so a rename into place stays on one file system)."""
        return self.models_dir / f"{TEMP_PREFIX}{purpose}-{secrets.token_hex(4)}"

    def make_temp_link(self, name: str, version: str | None) -> Path | None:
        """Create ``.<name>-xxxx -> <version>`` ready to be renamed over ``name``; ``None`` for no link."""
        if version is None:
            return None
        self.version_dir(version)
        tmp = self.temp_path(name)
        os.symlink(version, tmp)
        return tmp

    def replace_link(self, name: str, tmp: Path | None) -> None:
        """Atomically put ``tmp`` in place of link ``name`` (or remove the link when ``tmp`` is None)."""
        target = self.models_dir / name
        if tmp is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            os.replace(tmp, target)
        fsync_dir(self.models_dir)

    def remove_tree(self, path: Path) -> None:
        """Remove a version or temporary directory: first renamed to a hidden name, so a crash
        half-way leaves a leftover, never a half-deleted version that looks installed."""
        if not path.exists() and not path.is_symlink():
            return
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            doomed = path if path.name.startswith(TEMP_PREFIX) else self.temp_path(f"del-{path.name}")
            if doomed != path:
                os.rename(path, doomed)
                fsync_dir(path.parent)
            shutil.rmtree(doomed)
        fsync_dir(path.parent)

    # -- journal, history, lock ----------------------------------------------------------------
    def read_journal(self) -> dict | None:
        try:
            return json.loads(self.journal_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            # Written by rename, so a torn journal cannot happen; a damaged one is reported, and
            # treated as "operation of unknown phase": recovery then restores nothing and cleans.
            logger.warning("%s: unreadable journal (%s)", self.journal_path, exc)
            return {"op": "unknown", "phase": "unknown"}

    def write_journal(self, journal: dict) -> None:
        """Replace the journal atomically (temp file, fsync, rename, fsync dir)."""
        write_atomic(self.journal_path, json.dumps(journal, indent=1, sort_keys=True))

    def clear_journal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        fsync_dir(self.deploy_dir)

    def append_history(self, entry: dict) -> None:
        """Append one JSON line to the operations log (fsynced)."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
        with open(self.history_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def history(self, last: int = 10) -> list[dict]:
        try:
            lines = self.history_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-last:]:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the deploy lock; another operation holding it is an error, never a wait.

        ``flock`` is released by the kernel when its holder dies, even by SIGKILL, so a crashed
        flash never leaves the device locked.

        Raises:
            BundleError: another deploy operation is running (its pid in the message).
        """
        self.ensure_state_dirs()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                # The lock file itself is never written (a refused operation must change nothing);
                # the journal names the holder.
                holder = (self.read_journal() or {}).get("pid", "?")
                raise BundleError(f"another gemsight-deploy operation is running on {self.root} (pid {holder}); "
                                  "try again when it has finished") from exc
            yield
        finally:
            os.close(fd)  # closing drops the flock
