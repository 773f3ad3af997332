"""Every route of the API, in one place."""

from __future__ import annotations

from aiohttp import web

from api import auth, cmcd, discovery, engagement, health, openapi, playback, qoe, telemetry, videos

VIDEO = "/api/v1/videos/{video_id}"
# The per-video playback files; anything else under a video is one of its renditions (or a 404).
VIDEO_ASSET = VIDEO + r"/{asset:playlist\.m3u8|manifest\.mpd|stream|poster\.jpg|storyboard\.vtt|storyboard\.jpg}"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/v1/health", health.health, name="health")
    openapi.setup_openapi(app)  # GET /api/v1/openapi.json: this document of every route below (api/openapi.yaml)
    auth.setup_auth(app)  # sign-up, login, tokens, profiles
    telemetry.setup_telemetry(app)
    cmcd.setup_cmcd(app)
    qoe.setup_qoe(app)  # before the playback routes: /videos/{id}/viewers/live fits {rendition}/{file}
    discovery.setup_discovery(app)  # lists, search, recommendations
    engagement.setup_engagement(app)  # before the playback routes: /videos/{id}/comments/{cid} fits {rendition}/{file}
    # Uploads and metadata.
    router.add_post("/api/v1/videos", videos.create_video, name="videos")
    router.add_post("/api/v1/videos/upload", videos.upload_video_form, name="video_form_upload")
    router.add_get(VIDEO, videos.get_video, name="video")
    router.add_get(VIDEO + "/status", videos.get_video_status, name="video_status")
    router.add_post(VIDEO + "/complete", videos.complete_upload, name="video_complete")
    router.add_patch(VIDEO, videos.edit_video, name="video_edit")
    router.add_delete(VIDEO, videos.delete_video, name="video_delete")
    # Playback (GET also answers HEAD).
    router.add_get(VIDEO_ASSET, playback.video_asset, name="video_asset")
    router.add_get(VIDEO + "/{rendition}/{file}", playback.rendition_file, name="rendition_file")
    # The same files of a private video, with its playback token as a path prefix (api/access.py says why).
    router.add_get(
        VIDEO + "/p/{token}/" + VIDEO_ASSET.removeprefix(VIDEO + "/"), playback.video_asset, name="private_asset"
    )
    router.add_get(VIDEO + "/p/{token}/{rendition}/{file}", playback.rendition_file, name="private_rendition_file")
