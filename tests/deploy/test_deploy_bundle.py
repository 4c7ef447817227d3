"""Keys, the bundle format, and verification: every kind of damage is refused with a message."""
from __future__ import annotations

import io
import json
import os
import stat
import tarfile

import pytest

from deploy.bundle import SIGNATURE, SUMS, SemVer, check_member_name, create_bundle, format_sums, sign_sums
from deploy.keys import generate_keypair, key_id_of, load_private_key, load_public_key, trusted_keys
from deploy.verify import verify_bundle
from edge.errors import BundleError, ConfigError

from .conftest import CREATED


def test_keygen_modes_ids_and_no_overwrite(tmp_path):
    priv, pub = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert load_public_key(pub).key_id == key_id_of(load_private_key(priv).public_key())
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(tmp_path / "k")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(_write(tmp_path / "x.pub", b"junk"))


def _write(path, data):
    path.write_bytes(data)
    return path


def test_trusted_keys_sources(keys, tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(BundleError, match="no trusted public key"):
        trusted_keys(key_dir=tmp_path / "empty")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "release.pub").write_bytes(keys.pub.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    found = trusted_keys(key_dir=tmp_path / "empty")
    assert list(found) == [load_public_key(keys.pub).key_id]
    both = trusted_keys([keys.other_pub])
    assert len(both) == 2  # --pubkey plus the credential


def test_semver_order_and_refusals():
    order = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"]
    parsed = [SemVer.parse(v) for v in order]
    assert parsed == sorted(parsed[::-1])
    for bad in ("1.0", "v1.0.0", "01.0.0", "1.0.0-", "../1.0.0", ""):
        with pytest.raises(BundleError, match="not a semantic version"):
            SemVer.parse(bad)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../b", "a//b", ".hidden", "a/./b", "a\\b", "ü"])
def test_unsafe_names(name):
    with pytest.raises(BundleError, match="unsafe member name"):
        check_member_name(name)


def test_bundle_layout_is_canonical_and_reproducible(model_dir, keys, bundles, tmp_path):
    again = create_bundle(model_dir, keys.priv, tmp_path / "again.gsb", "1.0.0", CREATED)
    assert again.read_bytes() == bundles.v100.read_bytes()
    with tarfile.open(bundles.v100) as tar:
        names = tar.getnames()
        assert names[:4] == ["bundle.json", SUMS, SIGNATURE, "manifest.json"]
        assert all(m.isreg() and m.mode == 0o644 and m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
        meta = json.load(tar.extractfile("bundle.json"))
    assert meta["version"] == "1.0.0" and meta["signer"] == load_public_key(keys.pub).key_id
    assert meta["model_digest"].startswith("sha256:") and meta["files"] == ["manifest.json", "model.onnx"]
    vb = verify_bundle(bundles.v100, trusted_keys([keys.pub]))
    assert vb.version == "1.0.0" and vb.manifest.num_classes == 8 and set(vb.members) == {"manifest.json", "model.onnx"}


def test_bundle_refuses_bad_model_dirs(model_dir, keys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        create_bundle(empty, keys.priv, tmp_path / "x.gsb", "1.0.0")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "manifest.json").write_bytes((model_dir / "manifest.json").read_bytes())
    os.symlink(model_dir / "model.onnx", linked / "model.onnx")
    with pytest.raises(BundleError, match="symbolic links"):
        create_bundle(linked, keys.priv, tmp_path / "x.gsb", "1.0.0")
    for bad in ("1.0", "1.0.0+build.5"):
        with pytest.raises(BundleError, match="version"):
            create_bundle(model_dir, keys.priv, tmp_path / "x.gsb", bad)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        create_bundle(model_dir, keys.pub, tmp_path / "x.gsb", "1.0.0")
    assert not (tmp_path / "x.gsb").exists()


# -- damage: every byte of a bundle is covered ---------------------------------------------------

def _offsets(path):
    """(header offset, data offset, size) of every member."""
    with tarfile.open(path) as tar:
        return {m.name: (m.offset, m.offset_data, m.size) for m in tar.getmembers()}


def _flip(src, dst, offset):
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def damage_cases(bundle):
    """(label, offset) of single flipped bytes: content, sums, signature, headers, padding, trailer."""
    offs = _offsets(bundle)
    cases = []
    for name, (hdr, data, size) in offs.items():
        cases.append((f"content of {name}", data + size // 2))
        cases.append((f"header name of {name}", hdr + 1))
        cases.append((f"header size of {name}", hdr + 124 + 10))
        cases.append((f"header checksum of {name}", hdr + 150))
        if size % 512:
            cases.append((f"padding after {name}", data + size))
    cases.append(("end-of-archive block", bundle.stat().st_size - 700))
    cases.append(("last byte", bundle.stat().st_size - 1))
    return cases


def test_any_flipped_byte_is_refused(bundles, keys, tmp_path):
    trusted = trusted_keys([keys.pub])
    cases = damage_cases(bundles.v100)
    assert len(cases) >= 20
    for i, (label, offset) in enumerate(cases):
        bad = _flip(bundles.v100, tmp_path / f"bad{i}.gsb", offset)
        with pytest.raises(BundleError) as exc:
            verify_bundle(bad, trusted)
        assert str(bad) in str(exc.value), label
        bad.unlink()


def test_wrong_key_truncation_and_garbage(bundles, keys, tmp_path):
    trusted = trusted_keys([keys.pub])
    with pytest.raises(BundleError, match="does not trust"):
        verify_bundle(bundles.stranger, trusted)
    data = bundles.v100.read_bytes()
    for cut in (0, 100, 512, 4096, len(data) // 2, len(data) - 10240, len(data) - 512):
        short = tmp_path / f"short{cut}.gsb"
        short.write_bytes(data[:cut])
        with pytest.raises(BundleError):
            verify_bundle(short, trusted)
    longer = tmp_path / "appended.gsb"
    longer.write_bytes(data + b"\x01" + b"\0" * 511)
    with pytest.raises(BundleError, match="not a valid member header"):
        verify_bundle(longer, trusted)
    with pytest.raises(BundleError, match="cannot open"):
        verify_bundle(tmp_path / "missing.gsb", trusted)


def _evil_bundle(path, keys, extra: tarfile.TarInfo | None, extra_data: bytes = b"", sign_extra: bool = False):
    """A correctly signed bundle of a tiny fake payload plus one extra member."""
    payload = {"manifest.json": b"{}"}
    meta = json.dumps({"format": 1, "version": "9.0.0", "signer": key_id_of(load_private_key(keys.priv).public_key()),
                       "files": sorted(payload)}).encode()
    import hashlib
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in {**payload, "bundle.json": meta}.items()}
    if sign_extra and extra is not None:
        digests[extra.name] = hashlib.sha256(extra_data).hexdigest()
    sums = format_sums(digests)
    sig = sign_sums(sums, load_private_key(keys.priv))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("bundle.json", meta), (SUMS, sums), (SIGNATURE, sig), *payload.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra, io.BytesIO(extra_data) if extra.isreg() else None)
    return path


def _member(name, kind=tarfile.REGTYPE, linkname="", size=0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode, info.mtime = kind, linkname, size, 0o644, 0
    return info


@pytest.mark.parametrize("extra,message", [
    (_member("model.onnx", tarfile.SYMTYPE, "/etc/shadow"), "symbolic link"),
    (_member("model.onnx", tarfile.LNKTYPE, "manifest.json"), "hard link"),
    (_member("dev", tarfile.CHRTYPE), "device node"),
    (_member("blk", tarfile.BLKTYPE), "device node"),
    (_member("pipe", tarfile.FIFOTYPE), "fifo"),
    (_member("openvino", tarfile.DIRTYPE), "directory entry"),
    (_member("/etc/cron.d/x", size=3), "absolute"),
    (_member("../../x", size=3), "'..'"),
    (_member("extra.bin", size=3), "not listed in SHA256SUMS"),
])
def test_unsafe_members_refused(keys, tmp_path, extra, message):
    bundle = _evil_bundle(tmp_path / "evil.gsb", keys, extra, b"abc" if extra.isreg() else b"")
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle, trusted_keys([keys.pub]))


def test_signed_but_not_canonical_header_refused(keys, tmp_path):
    # A member with a setuid mode, even listed and signed, is not what `bundle` makes.
    extra = _member("tool", size=3)
    extra.mode = 0o4755
    bundle = _evil_bundle(tmp_path / "suid.gsb", keys, extra, b"abc", sign_extra=True)
    with pytest.raises(BundleError, match="not canonical"):
        verify_bundle(bundle, trusted_keys([keys.pub]))
