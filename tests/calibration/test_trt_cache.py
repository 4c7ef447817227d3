import struct

import pytest

from calibration.trt_cache import (DEFAULT_TRT_VERSION, cache_bytes_for, float_to_hex, format_cache, hex_to_float,
                                   parse_cache, read_cache, symmetric_scale, trt_version_number, write_cache)
from edge.errors import CalibrationError


@pytest.mark.parametrize("version, number", [("8.6.1", 8601), ("8.2.1.8", 8201), ("7.1.3", 7103),
                                             ("10.14.1", 101401), ("10.3.0", 100300), (8401, 8401)])
def test_version_number(version, number):
    assert trt_version_number(version) == number


def test_bad_version():
    with pytest.raises(CalibrationError, match="not a TensorRT version"):
        trt_version_number("ten")


def test_hex_is_big_endian_float_bits_without_leading_zeros():
    # A line TensorRT 8.4 wrote: 'input: 3caa54fc'
    assert abs(hex_to_float("3caa54fc") - 0.020792) < 1e-6
    assert float_to_hex(hex_to_float("3caa54fc")) == "3caa54fc"
    assert float_to_hex(0.0) == "0"
    assert float_to_hex(1.0) == "3f800000" == struct.pack(">f", 1.0).hex()
    tiny = 1e-40  # subnormal: would have leading zeros if padded
    assert not float_to_hex(tiny).startswith("0")


def test_round_trip(tmp_path):
    scales = {"input": symmetric_scale(2.64), "/layer1/Relu_output_0": symmetric_scale(5.0),
              "x:0": 0.125, "dead": symmetric_scale(0.0)}
    path = write_cache(tmp_path / "calib.cache", scales, "10.3.0")
    text = path.read_text()
    assert text.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    cache = read_cache(path)
    assert cache.version_number == 100300 and cache.algorithm == "EntropyCalibration2"
    assert set(cache.scales) == set(scales)
    for name, scale in scales.items():
        assert cache.scales[name] == struct.unpack(">f", struct.pack(">f", scale))[0]
    assert cache.scales["dead"] == 1.0  # zero range → scale 1, never 0


def test_reads_tensorrt_written_cache():
    text = ("TRT-8401-EntropyCalibration2\ninput: 3caa54fc\n371: 3caa54fc\n"
            "(Unnamed Layer* 64) [Shuffle]_output: 0\n404: 3d5c11b5\n")
    cache = parse_cache(text)
    assert cache.version_number == 8401
    assert cache.scales["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0
    assert len(cache.scales) == 4


@pytest.mark.parametrize("text, match", [("", "empty"), ("hello\ninput: 3f800000\n", "header"),
                                         ("TRT-8601-EntropyCalibration2\ninput 3f800000\n", "line 2"),
                                         ("TRT-8601-EntropyCalibration2\ninput: zz\n", "line 2")])
def test_malformed_cache(text, match):
    with pytest.raises(CalibrationError, match=match):
        parse_cache(text)


def test_missing_cache(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        read_cache(tmp_path / "nope.cache")


def test_header_rewritten_for_the_device_tensorrt(tmp_path):
    path = write_cache(tmp_path / "calib.cache", {"input": 0.5})
    assert path.read_text().startswith(f"TRT-{trt_version_number(DEFAULT_TRT_VERSION)}-")
    data = cache_bytes_for(path, "10.3.0").decode()
    assert data.splitlines() == ["TRT-100300-EntropyCalibration2", "input: 3f000000"]


def test_other_algorithm_refused(tmp_path):
    path = tmp_path / "c.cache"
    path.write_text("TRT-8601-MinMaxCalibration\ninput: 3f000000\n")
    with pytest.raises(CalibrationError, match="MinMaxCalibration"):
        cache_bytes_for(path, "8.6.1")


def test_format_sorted_and_stable():
    assert format_cache({"b": 1.0, "a": 1.0}) == format_cache({"a": 1.0, "b": 1.0})
