"""Benchmark: encode one chunk's whole ladder in one ffmpeg process vs. one process per rung.

One process decodes the source once and feeds every rung through a `split` filter; one process per rung
decodes the chunk again for every rung but lets each request be scheduled (and retried) on its own. This
script measures both side by side on the same chunk and prints the ratio.

    .venv/bin/python bench/transcode_fanout.py                  # 1080p30, 10 s, chunk of 8 s, 2 threads
    .venv/bin/python bench/transcode_fanout.py --repeat 3 --preset veryfast --threads 2

The source clip is generated with ffmpeg (testsrc2 + sine) into a temporary directory and removed after.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processors.media.encode import encode_chunk
from processors.media.ladder import EncoderTuning, ladder_chunks, plan_ladder
from processors.media.probe import probe_source


def make_source(path: Path, seconds: float, size: str, rate: int, threads: int) -> None:
    # A realistic-enough source: 1080p H.264 High at a high quality, so decoding costs what it would.
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate={rate}:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            "-threads",
            str(threads),
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated source")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="threads per ffmpeg process")
    parser.add_argument("--preset", default="veryfast", help="x264 preset for the ladder")
    parser.add_argument("--chunk-segments", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the best is kept")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    try:
        source = work / "source.mp4"
        make_source(source, args.seconds, args.size, args.rate, args.threads)
        info = probe_source(source)
        ladder = plan_ladder(info, top_codec=None, tuning=EncoderTuning(x264_preset=args.preset))
        chunk = ladder_chunks(ladder, info, args.chunk_segments)[0]
        print(
            f"source {info.width}x{info.height}@{float(info.fps):g} {info.duration_s:.1f}s; "
            f"chunk 0 = {float(chunk.duration_s):g}s; rungs: {', '.join(r.name for r in ladder.rungs)}; "
            f"x264 {args.preset}, {args.threads} threads per process"
        )

        def one_process() -> float:
            out = work / "one"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            encode_chunk(source, chunk, ladder.rungs, out, threads=args.threads, source_demuxer=info.demuxer)
            return time.perf_counter() - start

        def per_rung() -> float:
            out = work / "per-rung"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            for rung in ladder.rungs:
                encode_chunk(source, chunk, [rung], out, threads=args.threads, source_demuxer=info.demuxer)
            return time.perf_counter() - start

        results: dict[str, list[float]] = {"one process, split filter": [], "one process per rung": []}
        # Interleave the modes so drift in machine load hits both alike.
        for _ in range(args.repeat):
            results["one process, split filter"].append(one_process())
            results["one process per rung"].append(per_rung())
        best = {mode: min(times) for mode, times in results.items()}
        for mode, times in results.items():
            print(f"{mode:28s} best {best[mode]:7.2f}s  runs {', '.join(f'{t:.2f}' for t in times)}")
        ratio = best["one process per rung"] / best["one process, split filter"]
        print(f"per-rung / one-process time ratio: {ratio:.2f}x  (> 1 means one process is faster)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
