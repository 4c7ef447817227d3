"""``pull-crops DEVICE --ssh user@host --out DIR``: bring a device's collected crops to the trainer machine.

Like ``flash --ssh`` (:mod:`deploy.remote`): the system's ssh, in batch mode, with the technician's keys and
options. The device's collect folder (``collect.dir`` of its ``edge.yaml``; by default ``collect/`` in the edge's
state folder, ``/var/lib/gemsight/edge/collect`` under systemd) is sent as a tar stream on ssh's stdout, and each
member is checked before it is kept: only ``<class>/<name>.jpg`` files and ``manifest.jsonl``, nothing else, no
link, no path that climbs out. The copy lands in a hidden folder in ``DIR`` first and is merged into the trainer's
layout only once the stream ended well: an unreachable device, a broken connection or a refused member leaves
``DIR`` as it was (the partial copy is removed) and says why.

The result is the folder ``gemsight-train --extra-data DIR`` reads: ``DIR/<class>/<device>_<camera>_<slot>_<time>.jpg``
and ``DIR/manifest.jsonl`` (the device's lines merged with those already there, once each).
"""
from __future__ import annotations

import logging
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from deploy.remote import _opts, check_target
from edge.atomic import write_atomic
from edge.contracts import COLLECT_MANIFEST as MANIFEST, ID_PATTERN
from edge.errors import BundleError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_COLLECT_DIR = "/var/lib/gemsight/edge/collect"
MAX_MEMBER_BYTES = 16 << 20
_CLASS = re.compile(ID_PATTERN)
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.jpg$")
_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]*$")
NO_FOLDER = 3                 # the remote script's exit status when there is no collect folder


@dataclass
class Pulled:
    """What a pull brought: new crops per class, crops already there, the manifest's lines added."""

    out: Path
    new: dict[str, int]
    already: int
    lines: int

    @property
    def total(self) -> int:
        return sum(self.new.values())


def build_pull_command(target: str, collect_dir: str, port: int | None = None, options: Sequence[str] = (),
                       sudo: bool = False) -> list[str]:
    """The ssh argv that streams ``collect_dir`` of ``target`` as a tar on stdout."""
    if not _REMOTE_DIR.match(collect_dir) or ".." in collect_dir.split("/"):
        raise ConfigError(f"--collect-dir '{collect_dir}': expected an absolute path of [A-Za-z0-9._/-]")
    d = shlex.quote(collect_dir)
    prefix = "sudo -n " if sudo else ""
    script = (f"if [ -d {d} ]; then {prefix}tar -C {d} -cf - .; else echo 'no collect folder {collect_dir} on this "
              f"device (is collection on? collect.dir in edge.yaml)' >&2; exit {NO_FOLDER}; fi")
    cmd = ["ssh", *_opts(options)]
    if port:
        cmd += ["-p", str(port)]
    return cmd + ["--", check_target(target), script]


def _member_path(member: tarfile.TarInfo) -> tuple[str, ...] | None:
    """``(class, file)`` or ``(manifest,)`` for a member to keep; ``()`` for a folder; ``None`` to refuse."""
    parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
    if member.isdir() and (not parts or (len(parts) == 1 and _CLASS.match(parts[0]))):
        return ()
    if not member.isfile() or member.size > MAX_MEMBER_BYTES:
        return None
    if parts == (MANIFEST,):
        return parts
    if len(parts) == 2 and _CLASS.match(parts[0]) and _FILE.match(parts[1]):
        return parts
    return None


def _receive(stream, staging: Path, where: str) -> None:
    """Unpack the checked members of the tar ``stream`` into ``staging``."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            parts = _member_path(member)
            if parts is None:
                raise BundleError(f"{where}: refused '{member.name[:120]}' in the collect folder (only "
                                  f"<class>/<name>.jpg and {MANIFEST} are copied)")
            if not parts:
                continue
            dest = staging.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            with open(dest, "wb") as fh:
                shutil.copyfileobj(src, fh)


def _merge(staging: Path, out: Path) -> Pulled:
    """Move the staged crops into ``out`` (a crop already there stays) and merge the manifests' lines."""
    new: dict[str, int] = {}
    already = 0
    for d in sorted(p for p in staging.iterdir() if p.is_dir()):
        for f in sorted(d.iterdir()):
            dest = out / d.name / f.name
            if dest.exists():
                already += 1
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            f.replace(dest)
            new[d.name] = new.get(d.name, 0) + 1
    lines = 0
    pulled = staging / MANIFEST
    if pulled.is_file():
        mine = (out / MANIFEST).read_bytes().splitlines() if (out / MANIFEST).is_file() else []
        seen = set(mine)
        added = [line for line in pulled.read_bytes().splitlines() if line.strip() and line not in seen
                 and line.rstrip().endswith(b"}")]   # a torn last line stays behind
        if added:
            write_atomic(out / MANIFEST, b"".join(x + b"\n" for x in [*mine, *added]))
        lines = len(added)
    return Pulled(out, new, already, lines)


def pull_crops(device: str, target: str, out: str | Path, *, collect_dir: str = DEFAULT_COLLECT_DIR,
               port: int | None = None, options: Sequence[str] = (), sudo: bool = False) -> Pulled:
    """Copy ``device``'s collect folder over ssh to ``out`` in the trainer's layout.

    Raises:
        ConfigError: a bad target or folder name.
        BundleError: ssh could not reach the device, the device has no collect folder, the stream broke or held
            something that is not a crop; the partial copy is removed and ``out`` is as it was.
    """
    out = Path(out)
    where = f"{device} ({target})"
    cmd = build_pull_command(target, collect_dir, port, options, sudo)
    logger.info("pulling %s:%s into %s", target, collect_dir, out)
    with _staged(out) as staging, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            _receive(proc.stdout, staging, where)
        except tarfile.TarError as exc:
            proc.stdout.read()            # whatever is left: ssh then exits with its own status
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            raise BundleError(_failure(where, rc, err, f"the copy broke off ({exc})")) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            raise BundleError(_failure(where, rc, err))
        return _merge(staging, out)


def copy_collected(collect_dir: str | Path, out: str | Path) -> Pulled:
    """A collect folder on this machine (the demo's device root, a device's card in a reader) into ``out``, with
    pull-crops' checks and merge: only ``<class>/<name>.jpg`` and the manifest, staged, then merged.

    Raises:
        BundleError: no such folder, or it holds something that is not a crop; ``out`` is as it was.
    """
    src, out = Path(collect_dir), Path(out)
    if not src.is_dir():
        raise BundleError(f"no collect folder {src} (is collection on? collect.dir in edge.yaml); nothing was copied")
    with _staged(out) as staging, tempfile.TemporaryFile() as stream:
        # The same tar stream pull-crops reads from ssh, so the same checks refuse the same members.
        with tarfile.open(fileobj=stream, mode="w") as tar:
            tar.add(src, arcname=".")
        stream.seek(0)
        _receive(stream, staging, str(src))
        return _merge(staging, out)


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A hidden staging folder in ``out`` (made if missing), removed whatever happens; ``out`` itself is removed
    again if it was made here and nothing was merged into it."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".pull-{secrets.token_hex(3)}-", dir=out))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _failure(where: str, rc: int, err, what: str | None = None) -> str:
    err.seek(0)
    said = " ".join(err.read()[-2000:].decode("utf-8", "replace").split())[-300:]
    if rc == 255:
        what = "the ssh connection failed (the device is unreachable, refused it, or it dropped)"
    elif rc == NO_FOLDER:
        what = "the device has no collect folder"
    else:
        what = what or f"the copy failed (ssh exit {rc})"
    return f"pull-crops from {where}: {what}{': ' + said if said else ''}; nothing was copied"
