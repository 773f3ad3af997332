"""The transcoding plan of one video, as it travels: ladder rungs and chunks to and from event fields, the
job list the probe fans out, and the JSON kept on the video row for the manifest agent.

Jobs, in the order they are published:
1. the lowest rung, one job per chunk — the fast pass that makes the video `playable` early;
2. the audio track, once for the whole file;
3. per chunk, the other H.264 rungs together (one decode, a split filter: measured 1.57x cheaper than one
   process per rung on 2 cores, bench/transcode_fanout.py), and each HEVC/AV1 rung on its own (they are
   several times slower per pixel, so grouping them would make one message hold a worker for minutes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from processors.media.ladder import AudioRung, Chunk, Ladder, Rung

CODEC_TO_EVENT = {"h264": "H264", "hevc": "HEVC", "av1": "AV1", "aac": "AAC"}
CODEC_FROM_EVENT = {value: key for key, value in CODEC_TO_EVENT.items()}


def rational(value: Fraction) -> dict[str, int]:
    return {"num": value.numerator, "den": value.denominator}


def from_rational(value: dict[str, int]) -> Fraction:
    return Fraction(value["num"], value["den"])


def rung_to_event(rung: Rung) -> dict[str, Any]:
    return {
        "name": rung.name,
        "codec": CODEC_TO_EVENT[rung.codec],
        "bitrate_bps": rung.bitrate,
        "width": rung.width,
        "height": rung.height,
        "fps_num": rung.fps.numerator,
        "fps_den": rung.fps.denominator,
        "buffer_size_bits": rung.buffer_size,
        "segment_frames": rung.segment_frames,
        "timescale": rung.timescale,
        "preset": rung.preset,
        "crf": rung.crf,
        "channels": None,
        "sample_rate": None,
    }


def audio_to_event(audio: AudioRung) -> dict[str, Any]:
    return {
        "name": audio.name,
        "codec": "AAC",
        "bitrate_bps": audio.bitrate,
        "width": None,
        "height": None,
        "fps_num": None,
        "fps_den": None,
        "buffer_size_bits": None,
        "segment_frames": None,
        "timescale": None,
        "preset": None,
        "crf": None,
        "channels": audio.channels,
        "sample_rate": audio.sample_rate,
    }


def rung_from_event(event: dict[str, Any]) -> Rung:
    return Rung(
        name=event["name"],
        codec=CODEC_FROM_EVENT[event["codec"]],  # type: ignore[arg-type]  # checked by the Avro enum
        width=event["width"],
        height=event["height"],
        fps=Fraction(event["fps_num"], event["fps_den"]),
        bitrate=event["bitrate_bps"],
        buffer_size=event["buffer_size_bits"],
        segment_frames=event["segment_frames"],
        timescale=event["timescale"],
        preset=event["preset"],
        crf=event["crf"],
    )


def audio_from_event(event: dict[str, Any]) -> AudioRung:
    return AudioRung(
        name=event["name"], bitrate=event["bitrate_bps"], channels=event["channels"], sample_rate=event["sample_rate"]
    )


def chunk_from_event(request: dict[str, Any]) -> Chunk:
    return Chunk(
        index=request["chunk_index"],
        first_segment=request["first_segment"],
        segment_count=request["segment_count"],
        start_s=from_rational(request["start"]),
        duration_s=from_rational(request["duration"]),
        is_last=request["is_last"],
    )


def job_id(video_id: str, renditions: Sequence[str], chunk_index: int) -> str:
    """Deterministic: the same work always has the same id (a retry, a replayed probe)."""
    names = ",".join(renditions)
    digest = hashlib.sha256(names.encode()).hexdigest()[:8]
    return f"{video_id}/{chunk_index}/{digest}"


@dataclass(frozen=True)
class Source:
    video_id: str
    bucket: str
    key: str
    demuxer: str


def job_groups(ladder: Ladder) -> list[list[Rung]]:
    """How the ladder is split into jobs per chunk: the lowest rung alone, the other H.264 rungs together,
    each other codec's rung alone."""
    lowest, others = ladder.rungs[0], ladder.rungs[1:]
    groups: list[list[Rung]] = [[lowest]]
    h264 = [rung for rung in others if rung.codec == "h264"]
    if h264:
        groups.append(h264)
    groups += [[rung] for rung in others if rung.codec != "h264"]
    return groups


def transcode_requests(
    source: Source, ladder: Ladder, chunks: Sequence[Chunk], requested_at: datetime
) -> list[dict[str, Any]]:
    """Every TranscodeRequested of a video, in publication order (see the module docstring)."""
    groups = job_groups(ladder)

    def video_job(rungs: Sequence[Rung], chunk: Chunk) -> dict[str, Any]:
        return {
            "job_id": job_id(source.video_id, [r.name for r in rungs], chunk.index),
            "video_id": source.video_id,
            "kind": "VIDEO",
            "renditions": [rung_to_event(rung) for rung in rungs],
            "chunk_index": chunk.index,
            "chunk_count": len(chunks),
            "first_segment": chunk.first_segment,
            "segment_count": chunk.segment_count,
            "is_last": chunk.is_last,
            "start": rational(chunk.start_s),
            "duration": rational(chunk.duration_s),
            "segment_duration": rational(ladder.segment_duration),
            "source_bucket": source.bucket,
            "source_key": source.key,
            "source_demuxer": source.demuxer,
            "attempt": 1,
            "requested_at": requested_at,
        }

    jobs = [video_job(groups[0], chunk) for chunk in chunks]
    if ladder.audio is not None:
        whole = Chunk(0, 0, chunks[-1].segments.stop, Fraction(0), chunks[-1].end_s, True)
        jobs.append(
            {
                **video_job([], whole),
                "job_id": job_id(source.video_id, [ladder.audio.name], 0),
                "kind": "AUDIO",
                "renditions": [audio_to_event(ladder.audio)],
                "chunk_count": 1,
            }
        )
    for chunk in chunks:
        jobs += [video_job(group, chunk) for group in groups[1:]]
    return jobs


def plan_to_json(ladder: Ladder, chunk_count: int) -> str:
    """The plan kept on the video row: enough for the manifest agent to rebuild the ladder."""
    return json.dumps(
        {
            "rungs": [rung_to_event(rung) for rung in ladder.rungs],
            "audio": audio_to_event(ladder.audio) if ladder.audio else None,
            "fps": rational(ladder.fps),
            "segment_duration": rational(ladder.segment_duration),
            "chunk_count": chunk_count,
        },
        sort_keys=True,
    )


def ladder_from_json(text: str) -> tuple[Ladder, int]:
    plan = json.loads(text)
    ladder = Ladder(
        rungs=tuple(rung_from_event(rung) for rung in plan["rungs"]),
        audio=audio_from_event(plan["audio"]) if plan["audio"] else None,
        fps=from_rational(plan["fps"]),
        segment_duration=from_rational(plan["segment_duration"]),
    )
    return ladder, int(plan["chunk_count"])
