"""Deploy fixtures: keys, a model directory, signed bundles of several versions, device roots."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy.bundle import create_bundle
from deploy.flash import FlashOptions, flash
from deploy.keys import generate_keypair

CREATED = "2025-01-01T00:00:00Z"


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> SimpleNamespace:
    """Two ed25519 pairs: ``priv``/``pub`` (trusted by devices) and ``other_*`` (not trusted)."""
    d = tmp_path_factory.mktemp("keys")
    priv, pub = generate_keypair(d, "release")
    other_priv, other_pub = generate_keypair(d, "stranger")
    return SimpleNamespace(priv=priv, pub=pub, other_priv=other_priv, other_pub=other_pub)


@pytest.fixture(scope="session")
def model_dir(untrained_onnx, tmp_path_factory) -> Path:
    """A minimal model directory: model.onnx + manifest.json (the 64 px untrained ResNet-18)."""
    d = tmp_path_factory.mktemp("model")
    shutil.copy(untrained_onnx, d / "model.onnx")
    shutil.copy(untrained_onnx.parent / "manifest.json", d / "manifest.json")
    return d


@pytest.fixture(scope="session")
def bundles(model_dir, keys, tmp_path_factory) -> SimpleNamespace:
    """Signed bundles 0.9.0, 1.0.0, 1.1.0, 1.2.0 of the same model, and 1.1.0 signed by a stranger."""
    d = tmp_path_factory.mktemp("bundles")
    out = SimpleNamespace(dir=d)
    for v in ("0.9.0", "1.0.0", "1.1.0", "1.2.0"):
        setattr(out, "v" + v.replace(".", ""), create_bundle(model_dir, keys.priv, d / f"m-{v}.gsb", v, CREATED))
    out.stranger = create_bundle(model_dir, keys.other_priv, d / "stranger-1.1.0.gsb", "1.1.0", CREATED)
    return out


def make_root(path: Path, pub: Path) -> Path:
    """An empty device root that trusts ``pub``."""
    (path / "etc/gemsight/keys").mkdir(parents=True)
    shutil.copy(pub, path / "etc/gemsight/keys/release.pub")
    return path


def _link_or_copy(src: str, dst: str) -> None:
    # Big model files are hard-linked (deploy never writes a file in place); small ones (history,
    # journal) are copied so a test cannot change the template through them.
    if os.path.getsize(src) > 1 << 20:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def installed_template(bundles, keys, tmp_path_factory) -> Path:
    """A device root with 1.0.0 flashed (current, no previous). Copy it with :func:`clone_root`."""
    root = make_root(tmp_path_factory.mktemp("template") / "root", keys.pub)
    flash(bundles.v100, root, FlashOptions(restart=False))
    return root


def clone_root(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True, copy_function=_link_or_copy)
    return dest


@pytest.fixture
def device(installed_template, tmp_path) -> Path:
    """A fresh device root with 1.0.0 current."""
    return clone_root(installed_template, tmp_path / "root")


def tree_digest(root: Path) -> str:
    """SHA-256 over every path, type, mode, link target and file content under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(p.read_bytes())
    return h.hexdigest()
