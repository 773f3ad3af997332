"""A small ISO-BMFF (MP4/CMAF) reader: just what packaging needs, nothing more.

It reads our own encoder output, not uploads (uploads are only ever parsed by ffprobe/ffmpeg under the
limits in `tools.py`). Used to

- split one fragmented MP4 written by ffmpeg into an init segment and per-segment `moof`+`mdat` files,
- read each fragment's `tfdt` (baseMediaDecodeTime), duration and first-sample byte range, which is what
  the continuity checks, EXTINF/SegmentTimeline durations and I-frame byte ranges are made from,
- derive RFC 6381 codec strings (`avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`, `mp4a.40.2`) from the
  decoder configuration records in the init segment.

Run `python -m processors.media.mp4 FILE...` to print a box tree.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

# Boxes whose payload is only child boxes (plus the few with a fixed prefix handled in `_child_start`).
_CONTAINERS = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "dinf", "edts", "mvex", "moof", "traf", "udta", "stsd"}
)
_SAMPLE_ENTRY_CHILD_OFFSET = {
    # Bytes between the sample entry header and its child boxes (ISO/IEC 14496-12 VisualSampleEntry /
    # AudioSampleEntry, version 0).
    "avc1": 78,
    "avc3": 78,
    "hvc1": 78,
    "hev1": 78,
    "av01": 78,
    "mp4a": 28,
}

# trun/tfhd flags (ISO/IEC 14496-12 8.8.7, 8.8.8).
_TFHD_BASE_DATA_OFFSET = 0x1
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x2
_TFHD_DEFAULT_DURATION = 0x8
_TFHD_DEFAULT_SIZE = 0x10
_TFHD_DEFAULT_FLAGS = 0x20
_TRUN_DATA_OFFSET = 0x1
_TRUN_FIRST_SAMPLE_FLAGS = 0x4
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_CTO = 0x800
_SAMPLE_IS_NON_SYNC = 0x10000


class Mp4Error(ValueError):
    """The bytes are not the fragmented MP4 we expected."""


@dataclass(frozen=True)
class Box:
    type: str
    offset: int  # of the box header, from the start of the buffer
    size: int  # whole box, header included
    header_size: int

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int:
        return self.offset + self.size


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Sibling boxes in `data[start:end]`."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, raw_type = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise Mp4Error(f"truncated 64-bit box header at {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Mp4Error(f"box {raw_type!r} at {pos} claims {size} bytes, only {end - pos} left")
        yield Box(raw_type.decode("latin-1"), pos, size, header)
        pos += size
    if pos != end:
        raise Mp4Error(f"{end - pos} stray bytes after the last box")


def _child_start(data: bytes, box: Box) -> int:
    if box.type == "stsd":
        return box.payload_offset + 8  # version/flags + entry_count
    if box.type in _SAMPLE_ENTRY_CHILD_OFFSET:
        return box.payload_offset + _SAMPLE_ENTRY_CHILD_OFFSET[box.type]
    return box.payload_offset


def children(data: bytes, box: Box) -> Iterator[Box]:
    return iter_boxes(data, _child_start(data, box), box.end)


def find(data: bytes, path: str, parent: Box | None = None) -> Box | None:
    """First box at a slash-separated path, e.g. `moov/trak/mdia/mdhd`, below `parent` (or top level)."""
    first, _, rest = path.partition("/")
    siblings = iter_boxes(data) if parent is None else children(data, parent)
    for box in siblings:
        if box.type == first:
            return box if not rest else find(data, rest, box)
    return None


def walk(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> Iterator[tuple[int, Box]]:
    """Depth-first (depth, box) over every box we know how to descend into."""
    for box in iter_boxes(data, start, end):
        yield depth, box
        if box.type in _CONTAINERS or box.type in _SAMPLE_ENTRY_CHILD_OFFSET:
            yield from walk(data, _child_start(data, box), box.end, depth + 1)


def _full_box(data: bytes, box: Box) -> tuple[int, int, int]:
    """(version, flags, offset of the body after version/flags)."""
    version = data[box.payload_offset]
    flags = int.from_bytes(data[box.payload_offset + 1 : box.payload_offset + 4], "big")
    return version, flags, box.payload_offset + 4


# --------------------------------------------------------------------------------------------- init segment


@dataclass(frozen=True)
class TrackInfo:
    """What packaging needs from an init segment (single-track CMAF header)."""

    track_id: int
    handler: str  # "vide" / "soun"
    timescale: int
    sample_entry: str  # "avc1", "hvc1", "av01", "mp4a", ...
    codecs: str  # RFC 6381
    width: int | None
    height: int | None
    default_sample_duration: int  # from trex, used when fragments carry none
    default_sample_size: int
    default_sample_flags: int


def parse_init(data: bytes) -> TrackInfo:
    """Read the single track of an init segment (`ftyp`+`moov`)."""
    trak = find(data, "moov/trak")
    if trak is None:
        raise Mp4Error("no moov/trak: not an init segment")
    tkhd = _require(data, "tkhd", trak)
    version, _, body = _full_box(data, tkhd)
    # tkhd: creation/modification times are 8 bytes each in version 1, 4 in version 0.
    track_id = struct.unpack_from(">I", data, body + (16 if version == 1 else 8))[0]
    mdhd = _require(data, "mdia/mdhd", trak)
    version, _, body = _full_box(data, mdhd)
    timescale = struct.unpack_from(">I", data, body + (16 if version == 1 else 8))[0]
    hdlr = _require(data, "mdia/hdlr", trak)
    handler = data[hdlr.payload_offset + 8 : hdlr.payload_offset + 12].decode("latin-1")
    stsd = _require(data, "mdia/minf/stbl/stsd", trak)
    entry = next(children(data, stsd), None)
    if entry is None:
        raise Mp4Error("empty stsd")
    width = height = None
    if handler == "vide":
        width, height = struct.unpack_from(">HH", data, entry.payload_offset + 24)
    defaults = (0, 0, 0)
    trex = find(data, "moov/mvex/trex")
    if trex is not None:
        _, _, body = _full_box(data, trex)
        # track_ID, default_sample_description_index, duration, size, flags
        defaults = struct.unpack_from(">III", data, body + 8)
    return TrackInfo(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        sample_entry=entry.type,
        codecs=codec_string(data, entry),
        width=width,
        height=height,
        default_sample_duration=defaults[0],
        default_sample_size=defaults[1],
        default_sample_flags=defaults[2],
    )


def _require(data: bytes, path: str, parent: Box) -> Box:
    box = find(data, path, parent)
    if box is None:
        raise Mp4Error(f"missing {path} in {parent.type}")
    return box


def codec_string(data: bytes, entry: Box) -> str:
    """RFC 6381 `codecs` value for one sample entry (the CODECS attribute of HLS, @codecs of DASH)."""
    kind = entry.type
    if kind in ("avc1", "avc3"):
        avcc = _require_child(data, entry, "avcC")
        profile, compat, level = data[avcc.payload_offset + 1 : avcc.payload_offset + 4]
        return f"{kind}.{profile:02x}{compat:02x}{level:02x}"
    if kind in ("hvc1", "hev1"):
        return _hevc_codec_string(kind, data, _require_child(data, entry, "hvcC"))
    if kind == "av01":
        return _av1_codec_string(data, _require_child(data, entry, "av1C"))
    if kind == "mp4a":
        return _mp4a_codec_string(data, _require_child(data, entry, "esds"))
    raise Mp4Error(f"no codec string rule for sample entry {kind!r}")


def _require_child(data: bytes, entry: Box, kind: str) -> Box:
    for box in children(data, entry):
        if box.type == kind:
            return box
    raise Mp4Error(f"{entry.type} has no {kind}")


def _hevc_codec_string(kind: str, data: bytes, hvcc: Box) -> str:
    # ISO/IEC 14496-15 Annex E.3: profile space+idc, reversed compatibility flags, tier+level, constraints.
    p = hvcc.payload_offset
    byte1 = data[p + 1]
    profile_space = byte1 >> 6
    tier = (byte1 >> 5) & 1
    profile_idc = byte1 & 0x1F
    compat = int.from_bytes(data[p + 2 : p + 6], "big")
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    constraints = list(data[p + 6 : p + 12])
    level = data[p + 12]
    while constraints and constraints[-1] == 0:
        constraints.pop()
    space = ("", "A", "B", "C")[profile_space]
    parts = [kind, f"{space}{profile_idc}", f"{reversed_compat:X}", f"{'H' if tier else 'L'}{level}"]
    parts += [f"{c:X}" for c in constraints]
    return ".".join(parts)


def _av1_codec_string(data: bytes, av1c: Box) -> str:
    # AV1 Codec ISOBMFF binding, section 5 ("av01.P.LLT.DD", the optional fields left at their defaults).
    p = av1c.payload_offset
    profile = data[p + 1] >> 5
    level = data[p + 1] & 0x1F
    tier = data[p + 2] >> 7
    high_bitdepth = (data[p + 2] >> 6) & 1
    twelve_bit = (data[p + 2] >> 5) & 1
    bitdepth = 12 if twelve_bit else 10 if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.{bitdepth:02d}"


def _mp4a_codec_string(data: bytes, esds: Box) -> str:
    # esds = full box + ES_Descriptor(0x03) > DecoderConfigDescriptor(0x04) > DecoderSpecificInfo(0x05).
    pos = esds.payload_offset + 4
    end = esds.end
    object_type = None
    while pos < end:
        tag = data[pos]
        pos += 1
        length = 0
        for _ in range(4):
            byte = data[pos]
            pos += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x03:
            flags = data[pos + 2]
            pos += 3  # ES_ID, flags
            if flags & 0x80:
                pos += 2
            if flags & 0x40:
                pos += 1 + data[pos]
            if flags & 0x20:
                pos += 2
        elif tag == 0x04:
            object_type = data[pos]
            pos += 13
        elif tag == 0x05:
            if object_type is None:
                break
            audio_object_type = data[pos] >> 3
            if audio_object_type == 31:
                audio_object_type = 32 + (((data[pos] & 0x07) << 3) | (data[pos + 1] >> 5))
            return f"mp4a.{object_type:02x}.{audio_object_type}"
        else:
            pos += length
    if object_type is not None:
        return f"mp4a.{object_type:02x}"
    raise Mp4Error("esds without a DecoderConfigDescriptor")


# -------------------------------------------------------------------------------------------- media segments


@dataclass(frozen=True)
class Fragment:
    """One `moof` (+ its `mdat`) of a single-track fragmented MP4."""

    moof: Box
    mdat: Box
    sequence_number: int
    sequence_number_offset: int  # absolute offset of mfhd.sequence_number, to renumber a copy in place
    base_media_decode_time: int  # tfdt, in track timescale
    duration: int  # sum of sample durations, in track timescale
    sample_count: int
    starts_with_sync_sample: bool
    first_sample_offset: int  # absolute offset of sample 0's bytes in the buffer
    first_sample_size: int

    @property
    def end_time(self) -> int:
        return self.base_media_decode_time + self.duration


def parse_fragments(data: bytes, track: TrackInfo, start: int = 0) -> list[Fragment]:
    """Every `moof`/`mdat` pair from `start` on (other top-level boxes such as styp/sidx are skipped)."""
    fragments: list[Fragment] = []
    pending: Box | None = None
    for box in iter_boxes(data, start):
        if box.type == "moof":
            if pending is not None:
                raise Mp4Error(f"moof at {pending.offset} has no mdat")
            pending = box
        elif box.type == "mdat":
            if pending is None:
                raise Mp4Error(f"mdat at {box.offset} without a moof")
            fragments.append(_parse_fragment(data, pending, box, track))
            pending = None
    if pending is not None:
        raise Mp4Error(f"moof at {pending.offset} has no mdat (truncated?)")
    return fragments


def _parse_fragment(data: bytes, moof: Box, mdat: Box, track: TrackInfo) -> Fragment:
    mfhd = find(data, "mfhd", moof)
    traf = find(data, "traf", moof)
    if mfhd is None or traf is None:
        raise Mp4Error(f"moof at {moof.offset} lacks mfhd/traf")
    sequence_number = struct.unpack_from(">I", data, mfhd.payload_offset + 4)[0]
    tfhd = find(data, "tfhd", traf)
    tfdt = find(data, "tfdt", traf)
    if tfhd is None or tfdt is None:
        raise Mp4Error(f"traf at {traf.offset} lacks tfhd/tfdt")

    _, tf_flags, pos = _full_box(data, tfhd)
    pos += 4  # track_ID
    base_offset = moof.offset  # default-base-is-moof (and the CMAF rule when nothing is given)
    if tf_flags & _TFHD_BASE_DATA_OFFSET:
        base_offset = struct.unpack_from(">Q", data, pos)[0]
        pos += 8
    if tf_flags & _TFHD_SAMPLE_DESCRIPTION_INDEX:
        pos += 4
    default_duration = track.default_sample_duration
    default_size = track.default_sample_size
    default_flags = track.default_sample_flags
    if tf_flags & _TFHD_DEFAULT_DURATION:
        default_duration = struct.unpack_from(">I", data, pos)[0]
        pos += 4
    if tf_flags & _TFHD_DEFAULT_SIZE:
        default_size = struct.unpack_from(">I", data, pos)[0]
        pos += 4
    if tf_flags & _TFHD_DEFAULT_FLAGS:
        default_flags = struct.unpack_from(">I", data, pos)[0]

    version, _, pos = _full_box(data, tfdt)
    base_time = struct.unpack_from(">Q" if version == 1 else ">I", data, pos)[0]

    duration = 0
    count = 0
    first_offset = first_size = -1
    first_sync = False
    for trun in (b for b in children(data, traf) if b.type == "trun"):
        version, flags, pos = _full_box(data, trun)
        sample_count, pos = struct.unpack_from(">I", data, pos)[0], pos + 4
        data_offset = base_offset
        if flags & _TRUN_DATA_OFFSET:
            data_offset += struct.unpack_from(">i", data, pos)[0]
            pos += 4
        first_flags = None
        if flags & _TRUN_FIRST_SAMPLE_FLAGS:
            first_flags = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        for i in range(sample_count):
            sample_duration, sample_size, sample_flags = default_duration, default_size, default_flags
            if flags & _TRUN_DURATION:
                sample_duration = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            if flags & _TRUN_SIZE:
                sample_size = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            if flags & _TRUN_FLAGS:
                sample_flags = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            if flags & _TRUN_CTO:
                pos += 4
            if i == 0 and first_flags is not None:
                sample_flags = first_flags
            if count == 0:
                first_offset, first_size = data_offset, sample_size
                first_sync = not sample_flags & _SAMPLE_IS_NON_SYNC
            data_offset += sample_size
            duration += sample_duration
            count += 1
    if count == 0:
        raise Mp4Error(f"fragment at {moof.offset} has no samples")
    if not (mdat.payload_offset <= first_offset and first_offset + first_size <= mdat.end):
        raise Mp4Error(f"fragment at {moof.offset}: first sample lies outside its mdat")
    return Fragment(
        moof=moof,
        mdat=mdat,
        sequence_number=sequence_number,
        sequence_number_offset=mfhd.payload_offset + 4,
        base_media_decode_time=base_time,
        duration=duration,
        sample_count=count,
        starts_with_sync_sample=first_sync,
        first_sample_offset=first_offset,
        first_sample_size=first_size,
    )


def make_styp(major: bytes = b"msdh", compatible: tuple[bytes, ...] = (b"msdh", b"msix")) -> bytes:
    """A segment type box; DASH and CMAF readers expect media segments to open with one."""
    payload = major + struct.pack(">I", 0) + b"".join(compatible)
    return struct.pack(">I4s", 8 + len(payload), b"styp") + payload


def main(argv: list[str]) -> int:
    for name in argv:
        with open(name, "rb") as handle:
            data = handle.read()
        print(f"== {name}")
        for depth, box in walk(data):
            print(f"{'  ' * depth}{box.type} @{box.offset} size={box.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
