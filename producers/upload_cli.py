"""Upload a video file through the API and follow it until it is ready to play.

    python -m producers.upload_cli FILE --title T [--api http://127.0.0.1:8080] [--description D]
        [--tags a,b] [--privacy public|unlisted|private] [--thumbnail-time S] [--timeout 900]
        [--email E (--password-file F | $VIDPLAT_PASSWORD) [--sign-up] | --token T | $VIDPLAT_TOKEN]

Uploading needs a creator account. ``--email`` with a password logs in (``--sign-up`` creates the creator
account first when the e-mail is new; with ``--password-file`` naming a file that does not exist yet, a random
password is generated into it, mode 0600 — what ``make demo`` does); ``--token`` (or VIDPLAT_TOKEN) uses an
access token as it is. Passwords are read from a file or the environment, never from the command line, where
other users of the machine could see them. VIDPLAT_EMAIL stands in for ``--email``.

It creates the video (``POST /api/v1/videos``), streams the file from disk to the presigned URL it gets back
(or to each presigned part URL for a multipart upload) with a progress bar on stderr, completes the upload,
then polls ``GET /api/v1/videos/{id}/status`` every second, printing each status change, and finally prints
the playback URLs.

Exit codes: 0 when the video is ready, 1 when it failed (or the upload did), 2 on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp

EXIT_READY, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2
READ_CHUNK = 1024 * 1024


class UploadFailed(Exception):
    pass


class Progress:
    """A one-line progress bar (bytes, %, MB/s) redrawn with a carriage return, at most 10 times a second."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.sent = 0
        self.stream = stream
        self.started = time.monotonic()
        self._drawn_at = 0.0

    def advance(self, count: int) -> None:
        self.sent += count
        now = time.monotonic()
        if now - self._drawn_at >= 0.1 or self.sent >= self.total:
            self._drawn_at = now
            self.draw()

    def draw(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        percent = 100.0 * self.sent / self.total if self.total else 100.0
        width = 30
        filled = int(width * percent / 100)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r[{bar}] {self.sent / 1e6:9.1f}/{self.total / 1e6:.1f} MB {percent:5.1f}% "
            f"{self.sent / elapsed / 1e6:7.2f} MB/s"
        )
        self.stream.flush()

    def finish(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()


async def _file_chunks(path: Path, offset: int, length: int, progress: Progress) -> AsyncIterator[bytes]:
    """``length`` bytes of the file from ``offset``, read on a thread one chunk at a time."""
    file = await asyncio.to_thread(path.open, "rb")
    with file:
        await asyncio.to_thread(file.seek, offset)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(file.read, min(READ_CHUNK, remaining))
            if not chunk:
                raise UploadFailed(f"{path} shrank while uploading")
            remaining -= len(chunk)
            progress.advance(len(chunk))
            yield chunk


async def _api_error(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
        return f"HTTP {response.status}: {body.get('error')} {body.get('detail') or ''}".strip()
    except (ValueError, aiohttp.ContentTypeError, AttributeError):
        return f"HTTP {response.status}: {(await response.text())[:200]}"


async def _put(
    session: aiohttp.ClientSession,
    url: str,
    path: Path,
    offset: int,
    length: int,
    progress: Progress,
    headers: dict[str, str],
) -> str:
    # An explicit Content-Length keeps the body un-chunked, as a presigned S3 PUT requires.
    headers = {**headers, "Content-Length": str(length)}
    async with session.put(url, data=_file_chunks(path, offset, length, progress), headers=headers) as response:
        if response.status != 200:
            raise UploadFailed(f"storage refused the upload: HTTP {response.status}: {(await response.text())[:300]}")
        return response.headers.get("ETag", "")


def _password(options: argparse.Namespace) -> str | None:
    if options.password_file is None:
        return os.environ.get("VIDPLAT_PASSWORD") or None
    path: Path = options.password_file
    if not path.exists() and options.sign_up:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(24))
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise UploadFailed(f"cannot read the password file: {exc}") from None


async def authenticate(session: aiohttp.ClientSession, options: argparse.Namespace) -> dict[str, str]:
    """The Authorization header for the API calls (never sent to the storage URLs): token, or e-mail login."""
    if options.token:
        return {"Authorization": f"Bearer {options.token}"}
    if not options.email:
        return {}
    password = _password(options)
    if password is None:
        raise UploadFailed("--email needs a password: --password-file FILE or VIDPLAT_PASSWORD")
    credentials = {"email": options.email, "password": password}
    if options.sign_up:
        async with session.post(f"{options.api}/api/v1/auth/signup", json={**credentials, "role": "creator"}) as r:
            if r.status == 201:
                return {"Authorization": f"Bearer {(await r.json())['access_token']}"}
            if r.status != 409:  # 409: the account exists already, log in
                raise UploadFailed(f"sign-up refused: {await _api_error(r)}")
    async with session.post(f"{options.api}/api/v1/auth/login", json=credentials) as response:
        if response.status != 200:
            raise UploadFailed(f"login refused: {await _api_error(response)}")
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def upload(session: aiohttp.ClientSession, options: argparse.Namespace, err: TextIO) -> str:
    """Create the video, send the file, complete the upload; returns the video id."""
    path: Path = options.file
    size = (await asyncio.to_thread(path.stat)).st_size
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    metadata: dict[str, Any] = {
        "title": options.title,
        "filename": path.name,
        "size_bytes": size,
        "content_type": content_type,
        "privacy": options.privacy,
    }
    if options.description is not None:
        metadata["description"] = options.description
    if options.tags:
        metadata["tags"] = [tag.strip() for tag in options.tags.split(",") if tag.strip()]
    if options.thumbnail_time is not None:
        metadata["thumbnail_time"] = options.thumbnail_time
    async with session.post(f"{options.api}/api/v1/videos", json=metadata, headers=options.auth) as response:
        if response.status != 201:
            hint = " (sign in: --email with --password-file, or --token)" if response.status == 401 else ""
            raise UploadFailed(f"create refused: {await _api_error(response)}{hint}")
        created = await response.json()
    video_id: str = created["video_id"]
    plan = created["upload"]
    err.write(f"video {video_id}: uploading {path.name} ({size / 1e6:.1f} MB)\n")
    progress = Progress(size, err)
    if plan.get("type") == "multipart":
        part_size = int(plan["part_size"])
        for part in plan["parts"]:
            offset = (int(part["part_number"]) - 1) * part_size
            await _put(session, part["url"], path, offset, min(part_size, size - offset), progress, {})
    else:
        await _put(session, plan["url"], path, 0, size, progress, dict(plan.get("headers") or {}))
    progress.finish()
    complete_url = plan.get("complete_url") or f"{options.api}/api/v1/videos/{video_id}/complete"
    async with session.post(complete_url, headers=options.auth) as response:
        if response.status != 202:
            raise UploadFailed(f"complete refused: {await _api_error(response)}")
    return video_id


async def follow(
    session: aiohttp.ClientSession, options: argparse.Namespace, video_id: str, out: TextIO, err: TextIO
) -> int:
    """Poll the status until ready (0), failed (1) or the timeout (2), printing every change."""
    deadline = time.monotonic() + options.timeout
    last: str | None = None
    while True:
        try:
            async with session.get(f"{options.api}/api/v1/videos/{video_id}/status", headers=options.auth) as response:
                if response.status == 200:
                    status = await response.json()
                else:
                    err.write(f"status check: {await _api_error(response)}\n")
                    status = None
        except aiohttp.ClientError as exc:
            err.write(f"status check failed ({exc}); retrying\n")
            status = None
        if status is not None and status["status"] != last:
            last = status["status"]
            reason = f": {status['reason']}" if status.get("reason") else ""
            out.write(f"{time.strftime('%H:%M:%S')} {last}{reason}\n")
            out.flush()
            if last == "ready":
                await _print_urls(session, options, video_id, out)
                return EXIT_READY
            if last in ("failed", "deleted"):
                return EXIT_FAILED
        if time.monotonic() >= deadline:
            err.write(f"timed out after {options.timeout:g} s (last status: {last})\n")
            return EXIT_TIMEOUT
        await asyncio.sleep(min(options.poll_interval, max(0.0, deadline - time.monotonic())))


async def _print_urls(session: aiohttp.ClientSession, options: argparse.Namespace, video_id: str, out: TextIO) -> None:
    async with session.get(f"{options.api}/api/v1/videos/{video_id}", headers=options.auth) as response:
        urls = (await response.json()).get("urls") or {}
    for label, name in (("HLS", "hls"), ("DASH", "dash"), ("progressive", "progressive")):
        if urls.get(name):
            out.write(f"{label}: {urls[name]}\n")
    out.flush()


async def run(options: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    options.api = options.api.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            options.auth = await authenticate(session, options)
            video_id = await upload(session, options, err)
        except (UploadFailed, aiohttp.ClientError, OSError) as exc:
            err.write(f"\nupload failed: {exc}\n")
            return EXIT_FAILED
        out.write(f"video_id: {video_id}\n")
        out.flush()
        return await follow(session, options, video_id, out, err)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m producers.upload_cli", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the video file to upload")
    parser.add_argument("--title", required=True)
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="base URL of the API")
    parser.add_argument("--description")
    parser.add_argument("--tags", help="comma-separated tags")
    parser.add_argument("--privacy", choices=("public", "unlisted", "private"), default="public")
    parser.add_argument("--thumbnail-time", type=float, help="poster frame offset in seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for ready (default 900)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--email", default=os.environ.get("VIDPLAT_EMAIL"), help="creator account to log in as")
    parser.add_argument("--password-file", type=Path, help="file holding the password (else $VIDPLAT_PASSWORD)")
    parser.add_argument("--sign-up", action="store_true", help="create the creator account if it does not exist")
    parser.add_argument("--token", default=os.environ.get("VIDPLAT_TOKEN"), help="an access token instead of a login")
    options = parser.parse_args(argv)
    if not options.file.is_file():
        parser.error(f"{options.file} is not a file")
    return options


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
