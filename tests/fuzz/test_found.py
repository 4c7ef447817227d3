"""What the fuzzers found, each kept as a plain test so it stays fixed whatever the strategies draw."""
from __future__ import annotations

import json

import pytest

from deploy.verify import extract_verified, verify_bundle
from edge.config.device import load_config
from edge.errors import BundleError, ConfigError
from tests.fuzz.targets import BASE_MANIFEST, _bundle


@pytest.mark.parametrize("data, needle", [
    (b"device: a\x00b\n", "not valid YAML (unacceptable character #x0000"),  # ReaderError from the loader's constructor
    (b"!!int", "a value cannot be read"),                                     # IndexError in PyYAML's int constructor
    (b'model: {path: "m\\0"}', "model.path: holds a NUL character"),           # ValueError from Path.resolve()
    (b'cameras: [{source: "file://c\\ud800.mp4"}]',                             # UnicodeEncodeError from Path.resolve()
     "cameras.0.source: holds a lone surrogate"),
])
def test_yaml_the_loader_itself_chokes_on(tmp_path, data, needle):
    path = tmp_path / "edge.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def build(tmp_path):
    """``build(extra=[...], meta=..., manifest=..., sig=...)`` -> the path of a signed bundle, and the keys."""
    with _bundle(tmp_path) as (_, check):
        yield check, tmp_path / "fuzz.gsb"


def _case(extra=(), meta=b"auto", manifest=None, control="signed", junk=b""):
    return ("built", {"meta": meta, "manifest": manifest or json.dumps(BASE_MANIFEST).encode(), "extra": list(extra),
                      "control": control, "junk": junk})


def _refusal(build, case) -> str:
    check, path = build
    assert check(case) == "refused"  # the fuzz target's own property held (a BundleError naming the bundle)
    from tests.fuzz import targets  # noqa: PLC0415

    with pytest.raises(BundleError) as info:
        verify_bundle(path, targets_keys(targets, path))
    return str(info.value)


def targets_keys(targets, path):
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    from deploy.keys import PublicKey, key_id_of  # noqa: PLC0415

    public = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    return {key_id_of(public): PublicKey(key_id_of(public), public, path)}


def test_a_member_that_is_both_file_and_directory_is_refused_before_extraction(build):
    # Was: verified, then FileExistsError half-way through extraction.
    text = _refusal(build, _case(extra=[("a", b"x"), ("a/b", b"y")]))
    assert "member 'a/b' needs 'a' to be a directory" in text


def test_bundle_json_files_of_other_types(build):
    # Was: TypeError from sorting a list of strings and numbers.
    meta = {"format": 1, "version": "1.2.0", "created": "x", "signer": "", "files": ["model.onnx", 3, None]}
    check, path = build
    keys = targets_keys(None, path)
    meta["signer"] = next(iter(keys))
    assert check(_case(meta=json.dumps(meta).encode())) == "refused"
    with pytest.raises(BundleError, match="'files' does not match"):
        verify_bundle(path, keys)


def test_bad_manifest_and_unsafe_names_are_one_line_naming_the_bundle(build):
    text = _refusal(build, _case(manifest=b'{"x": 1}'))
    assert "\n" not in text and "bad model manifest: arch: Field required; classes: Field required" in text
    text = _refusal(build, _case(extra=[("../x", b"")]))
    assert text.startswith(str(build[1])) and "unsafe member name '../x'" in text
    text = _refusal(build, _case(extra=[('"\n', b"")]))  # was: the name's line break split the message
    assert "\n" not in text and "unsafe member name '\"\\n'" in text


def test_signature_fields_of_other_types(build):
    text = _refusal(build, _case(control="sig", junk=b'{"algorithm": "ed25519", "key_id": [1], "signature": "AA=="}'))
    assert "SHA256SUMS.sig is malformed" in text
    text = _refusal(build, _case(control="sig", junk=b"[" * 5000))
    assert "SHA256SUMS.sig is not valid JSON (nested too deeply)" in text
    # Was: a key id, algorithm or signer holding a line break split the message.
    text = _refusal(build, _case(control="sig", junk=b'{"algorithm": "ed25519", "key_id": "k\\n1", "signature": ""}'))
    assert "\n" not in text and "signed by key k\\n1, which this device does not trust" in text
    text = _refusal(build, _case(meta=b'{"format": 1, "version": "1.2.0", "signer": "x\\ny"}'))
    assert "\n" not in text and "names signer x\\ny but key" in text


def test_accepted_bundle_still_extracts(build, tmp_path):
    check, path = build
    assert check(_case(extra=[("openvino/model.xml", b"<xml/>"), ("notes.txt", b"hi")])) == "accepted"
    dest = tmp_path / "again"
    dest.mkdir()
    assert extract_verified(verify_bundle(path, targets_keys(None, path)), dest) > 0
    assert (dest / "openvino" / "model.xml").read_bytes() == b"<xml/>"


@pytest.mark.parametrize("uri, needle", [
    ("csi://\u00b2", "csi://N needs a sensor number"),       # int("²") raised ValueError: isdigit() is not int()
    ("csi://0?flip=abc", "flip=abc must be 0..7"),            # int("abc") raised ValueError
])
def test_source_uris_that_passed_the_config_but_crashed_parse_source(uri, needle):
    from edge.capture.uri import parse_source  # noqa: PLC0415

    with pytest.raises(ConfigError, match=needle):
        parse_source(uri)


def test_a_source_with_a_newline_is_refused_by_the_config():
    # Was: accepted, then every later error echoing the URI spanned two lines.
    from edge.config.device import parse_config  # noqa: PLC0415
    from tests.helpers import device_config  # noqa: PLC0415

    data = device_config("m", [{"id": "c", "source": "file:///a.mp4\nrealtime=0"}], device="d")
    with pytest.raises(ConfigError, match=r"cameras.0.source: source 'file:///a.mp4\\nrealtime=0' holds a control"):
        parse_config(data, "edge.yaml")


def test_terminal_control_sequences_from_a_publisher_are_shown_not_obeyed():
    # Was: a label "\x1b[2J" cleared the listener's terminal; a status detail could retitle it.
    import io  # noqa: PLC0415

    from edge.link import messages  # noqa: PLC0415
    from edge.link.listen_view import Event  # noqa: PLC0415
    from edge.link.listen_view import Renderer  # noqa: PLC0415
    from tests.helpers import make_labels  # noqa: PLC0415

    labels = make_labels("cam0")
    labels.update(seq=0, publish_ts=1.0)
    labels["slots"][0]["label"] = "ring\x1b[2J\u202e"
    status = messages.status_message(device="case-01", camera="cam0", state="down", detail="\x1b]0;pwned\x07", ts=1.0)
    for mode in ("lines", "table"):
        out = io.StringIO()
        view = Renderer(out, mode)
        for kind, msg in (("labels", labels), ("status", status)):
            view.show(Event(kind, "cam0", msg, messages.encode(msg)))
        view.finish()
        text = out.getvalue().replace("\x1b[H\x1b[2J", "")
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, mode
        assert "ring\\x1b[2J\\u202e" in text and "\\x1b]0;pwned\\x07" in text


def test_keys_and_tags_with_line_breaks_stay_on_their_line(tmp_path):
    # Was: a runtime name or an unknown key holding "\n" split one problem over two lines.
    from edge.config.device import parse_config  # noqa: PLC0415
    from edge.errors import ManifestError  # noqa: PLC0415
    from edge.manifest import Manifest  # noqa: PLC0415
    from tests.helpers import device_config  # noqa: PLC0415

    data = device_config("m", [{"id": "c", "source": "file:///x"}], device="d", runtime={"name": "auto\nx"},
                         **{"a\u2028b": 1})
    with pytest.raises(ConfigError) as info:
        parse_config(data, "edge.yaml")
    assert str(info.value).split("\n") == [
        "edge.yaml: runtime: unknown runtime 'auto\\x0ax' (known: auto, onnxruntime, openvino, tensorrt)",
        "edge.yaml: a\\u2028b: unknown field (not allowed here)"]
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(json.dumps({**BASE_MANIFEST, "x\ny": 1}), "m.json")
    assert str(info.value) == "m.json: invalid manifest: x\\x0ay: unknown field (not allowed here)"


def test_a_base256_size_field_is_a_refusal_naming_the_bundle(build):
    # Was: "member 'bundle.json' cannot be stored in a ustar header", without the bundle's name.
    check, path = build
    buf = bytearray(path.read_bytes())
    buf[124:136] = b"\x80" + b"\x00" * 3 + b"\x01" + b"\x00" * 7  # GNU base-256: 2**56 bytes
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf[:512])  # a valid checksum: tarfile reads on
    path.write_bytes(bytes(buf))
    with pytest.raises(BundleError) as info:
        verify_bundle(path, targets_keys(None, path))
    assert str(info.value).startswith(f"{path}: header of member 'bundle.json' is not canonical")


def test_a_key_with_a_line_break_holding_a_nul_stays_on_one_line(tmp_path):
    # Was: the key path of a NUL-holding value was echoed with its line break.
    path = tmp_path / "edge.yaml"
    path.write_bytes(b'"a\\nb": "x\\0"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: a\\x0ab: holds a NUL character"
