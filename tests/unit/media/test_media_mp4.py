"""RFC 6381 codec strings and box parsing of the small ISO-BMFF reader."""

from __future__ import annotations

import struct

import pytest

from processors.media import mp4


def box(kind: str, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind.encode()) + payload


def sample_entry(kind: str, config: bytes) -> bytes:
    prefix = bytes(mp4._SAMPLE_ENTRY_CHILD_OFFSET[kind])
    return box(kind, prefix + config)


def codec(kind: str, config: bytes) -> str:
    data = sample_entry(kind, config)
    return mp4.codec_string(data, next(mp4.iter_boxes(data)))


def test_avc_codec_string() -> None:
    assert codec("avc1", box("avcC", bytes([1, 0x64, 0x00, 0x1F, 0xFF]))) == "avc1.64001f"


def test_hevc_codec_string_matches_the_spec_example() -> None:
    # ISO/IEC 14496-15 E.3 example: Main profile, level 3.1, compatibility flags 0x60000000, constraint 0xB0.
    hvcc = bytes([1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93]) + bytes(10)
    assert codec("hvc1", box("hvcC", hvcc)) == "hvc1.1.6.L93.B0"


def test_av1_codec_string() -> None:
    # marker/version, seq_profile 0 + level 8, tier 0 / 8-bit / 4:2:0.
    assert codec("av01", box("av1C", bytes([0x81, 0x08, 0x0C, 0x00]))) == "av01.0.08M.08"


def test_aac_codec_string() -> None:
    decoder_specific = bytes([0x05, 0x02, 0x11, 0x90])  # AAC-LC (object type 2), 48 kHz, stereo
    # objectTypeIndication 0x40 (MPEG-4 audio), streamType, bufferSizeDB(3), maxBitrate(4), avgBitrate(4)
    config = bytes([0x04, 0x11, 0x40, 0x15]) + bytes(11) + decoder_specific
    es = bytes([0x03, 0x16, 0x00, 0x01, 0x00]) + config
    assert codec("mp4a", box("esds", bytes(4) + es)) == "mp4a.40.2"


def test_box_walk_rejects_overrunning_sizes() -> None:
    data = struct.pack(">I4s", 100, b"moof") + bytes(8)
    with pytest.raises(mp4.Mp4Error):
        list(mp4.iter_boxes(data))


def test_styp() -> None:
    styp = mp4.make_styp()
    (parsed,) = list(mp4.iter_boxes(styp))
    assert parsed.type == "styp" and parsed.size == len(styp) == 24
