"""Every route of the API, in one place (``setup_routes``); the handlers live in one module per resource.

Order matters where templates overlap: aiohttp tries routes in the order they are added, and
``/api/v1/videos/{video_id}/{rendition}/{file}`` (playback) also fits ``/videos/{id}/viewers/live`` and
``/videos/{id}/comments/{comment_id}``, so those are added before the playback routes.
"""

from __future__ import annotations

from aiohttp import web

from api import (
    auth,
    cmcd,
    discovery,
    engagement,
    health,
    openapi,
    playback,
    qoe,
    telemetry,
    tus,
    uploads,
    videos,
    webapp,
)

VIDEO = "/api/v1/videos/{video_id}"
# The per-video playback files; anything else under a video is one of its renditions (or a 404).
VIDEO_ASSET = VIDEO + r"/{asset:playlist\.m3u8|manifest\.mpd|stream|poster\.jpg|storyboard\.vtt|storyboard\.jpg}"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/v1/health", health.health, name="health")
    # This document of every route below (api/openapi.yaml).
    router.add_get("/api/v1/openapi.json", openapi.openapi_json, name="openapi")
    # Sign-up, login, tokens, profiles.
    router.add_post("/api/v1/auth/signup", auth.sign_up, name="auth_signup")
    router.add_post("/api/v1/auth/login", auth.log_in, name="auth_login")
    router.add_post("/api/v1/auth/refresh", auth.refresh, name="auth_refresh")
    router.add_post("/api/v1/auth/logout", auth.log_out, name="auth_logout")
    router.add_post("/api/v1/auth/logout-all", auth.log_out_everywhere, name="auth_logout_all")
    router.add_post("/api/v1/auth/token", auth.profile_token, name="auth_profile_token")
    router.add_get("/api/v1/me", auth.me, name="me")
    router.add_get("/api/v1/profiles", auth.list_profiles, name="profiles")
    router.add_post("/api/v1/profiles", auth.create_profile, name="profile_create")
    router.add_delete("/api/v1/profiles/{profile_id}", auth.delete_profile, name="profile")
    # The collectors.
    router.add_post("/api/v1/telemetry", telemetry.collect_beacon, name="telemetry")
    router.add_post("/api/v1/cmcd", cmcd.collect_event_reports, name="cmcd_reports")
    # QoE reads; before the playback routes: /videos/{id}/viewers/live fits {rendition}/{file}.
    router.add_get(VIDEO + "/qoe", qoe.video_qoe, name="video_qoe")
    router.add_get(VIDEO + "/viewers/live", qoe.live_viewers, name="video_live_viewers")
    router.add_get(VIDEO + "/views", qoe.video_views, name="video_views")
    router.add_get("/api/v1/qoe/overview", qoe.overview, name="qoe_overview")
    router.add_get("/api/v1/qoe/views/{view_id:.+}", qoe.view, name="qoe_view")
    router.add_get("/api/v1/viewers/{viewer_id}/progress", qoe.viewer_progress, name="viewer_progress")
    # Lists, search, recommendations.
    router.add_get("/api/v1/videos", discovery.list_videos, name="video_list")
    router.add_get("/api/v1/creators/{creator_id}/videos", discovery.creator_videos, name="creator_videos")
    router.add_get("/api/v1/search", discovery.search, name="search")
    router.add_get("/api/v1/recommendations/trending", discovery.trending_videos, name="trending")
    router.add_get("/api/v1/recommendations/for-you", discovery.videos_for_you, name="for_you")
    router.add_get(VIDEO + "/related", discovery.related_videos, name="related")
    # Engagement; before the playback routes: /videos/{id}/comments/{comment_id} fits {rendition}/{file}.
    router.add_post(VIDEO + "/comments", engagement.post_comment, name="video_comments_post")
    router.add_get(VIDEO + "/comments", engagement.list_comments, name="video_comments")
    router.add_delete(VIDEO + "/comments/{comment_id}", engagement.delete_comment, name="video_comment")
    router.add_post(VIDEO + "/comments/{comment_id}/replies", engagement.post_reply, name="video_comment_replies_post")
    router.add_get(VIDEO + "/comments/{comment_id}/replies", engagement.list_replies, name="video_comment_replies")
    router.add_put(VIDEO + "/rating", engagement.put_rating, name="video_rating_put")
    router.add_delete(VIDEO + "/rating", engagement.delete_rating, name="video_rating")
    router.add_get(VIDEO + "/engagement", engagement.engagement_totals, name="video_engagement")
    router.add_put("/api/v1/me/progress/{video_id}", engagement.put_progress, name="my_progress_put")
    router.add_get("/api/v1/me/progress/{video_id}", engagement.get_progress, name="my_progress")
    router.add_get("/api/v1/me/history", engagement.history, name="my_history")
    router.add_get("/api/v1/me/continue-watching", engagement.continue_watching, name="my_continue_watching")
    # Uploads and metadata.
    router.add_post("/api/v1/videos", uploads.create_video, name="videos")
    router.add_post("/api/v1/videos/upload", uploads.upload_video_form, name="video_form_upload")
    router.add_get(VIDEO, videos.get_video, name="video")
    router.add_get(VIDEO + "/status", videos.get_video_status, name="video_status")
    router.add_post(VIDEO + "/complete", uploads.complete_upload, name="video_complete")
    router.add_patch(VIDEO, videos.edit_video, name="video_edit")
    router.add_delete(VIDEO, videos.delete_video, name="video_delete")
    # Resumable uploads (tus 1.0). Their state store and expiry sweep, and the Tus-Resumable/CORS headers of their
    # answers, come with them (added after init_app's resources and CORS hook, which they build on).
    router.add_route("OPTIONS", tus.TUS_PATH, tus.tus_options, name="tus_options")
    router.add_post(tus.TUS_PATH, tus.create_upload, name="tus_create")
    router.add_route("OPTIONS", tus.TUS_PATH + "/{upload_id}", tus.tus_options, name="tus_upload_options")
    router.add_head(tus.TUS_PATH + "/{upload_id}", tus.upload_offset, name="tus_upload_offset")
    router.add_patch(tus.TUS_PATH + "/{upload_id}", tus.patch_upload, name="tus_upload_patch")
    router.add_delete(tus.TUS_PATH + "/{upload_id}", tus.terminate_upload, name="tus_upload_delete")
    app.cleanup_ctx.append(tus.tus_ctx)
    app.on_response_prepare.append(tus.add_tus_headers)
    # Playback (GET also answers HEAD).
    router.add_get(VIDEO_ASSET, playback.video_asset, name="video_asset")
    router.add_get(VIDEO + "/{rendition}/{file}", playback.rendition_file, name="rendition_file")
    # The same files of a private video, with its playback token as a path prefix (api/access.py says why).
    router.add_get(
        VIDEO + "/p/{token}/" + VIDEO_ASSET.removeprefix(VIDEO + "/"), playback.video_asset, name="private_asset"
    )
    router.add_get(VIDEO + "/p/{token}/{rendition}/{file}", playback.rendition_file, name="private_rendition_file")
    # The web app (web/app) for every other GET outside /api/: a fallback middleware, not a route (api/webapp.py).
    webapp.setup_web_app(app)
