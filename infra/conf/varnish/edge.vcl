vcl 4.1;
# The CDN edge in front of the API (DESIGN.md: Debian's Varnish locally, a commercial CDN in production).
#
# infra/services.py renders this file into the edge's state directory with the API's address filled in below
# (backend api), then runs `varnishd -F -n <state>/services/edge/varnish -a 127.0.0.1:8081 -f <that file>`.
#
# * Only the playback routes of api/routes.py are looked up in the cache (manifests, segments, progressive MP4,
#   poster, storyboard; the token-prefixed paths of private videos too); every other request passes to the API.
# * The API's Cache-Control decides what is kept and for how long: segments a year, manifests 5 s / 60 s,
#   anything `private` (every response of a private video) never. The built-in VCL still applies after ours:
#   requests with Authorization or Cookie pass, private / no-store / no-cache answers are not kept.
# * Range requests are served from the cached object (a miss fetches the whole object and streams it).
# * Purges: `BAN` with `X-Purge-Video: <video id>` from localhost (acl purgers) bans every object of that video,
#   by the X-Video-Id header each object carries (an obj.* ban, so the ban lurker clears it in the background).
#   The Python side is sinks/cdn_edge.py; processors/cdn_purge.py sends them on lifecycle events.
# * `X-Cache: HIT|MISS` on every answer; X-Video-Id never leaves the edge.

import std;

backend api {
    .host = "{backend_host}";
    .port = "{backend_port}";
    .connect_timeout = 2s;
    # Uploads pass through the edge too: the API answers a form upload only once its body is stored.
    .first_byte_timeout = 300s;
    .between_bytes_timeout = 60s;
}

# Who may purge. Locally the control worker, on this machine; in front of a CDN, its purge API's addresses.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(405, "Purging not allowed"));
        }
        if (req.http.X-Purge-Video !~ "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$") {
            # The header goes into a ban expression: only what can be a video id (api/videos.py VIDEO_ID_RE).
            return (synth(400, "X-Purge-Video must be a video id"));
        }
        if (std.ban("obj.http.X-Video-Id == " + req.http.X-Purge-Video)) {
            return (synth(200, "Banned"));
        }
        return (synth(500, "Ban refused: " + std.ban_error()));
    }
    if (req.url !~ "^/api/v1/videos/[A-Za-z0-9][A-Za-z0-9_-]{0,127}/(p/[^/?]+/)?(playlist\.m3u8|manifest\.mpd|stream|poster\.jpg|storyboard\.vtt|storyboard\.jpg|[a-z0-9-]{1,32}/(init\.mp4|seg_[0-9]{5}\.m4s|index\.m3u8|playlist\.m3u8|iframes\.m3u8))(\?.*)?$") {
        return (pass);
    }
    # A playback route: on to the built-in vcl_recv (GET and HEAD only; Authorization or Cookie pass).
}

sub vcl_hash {
    # One origin, so the host is left out; CMCD query data (CTA-5004) differs on every request of a player and
    # must not split the cache. A miss still carries it to the API, which harvests it.
    hash_data(regsub(regsuball(req.url, "([?&])CMCD=[^&]*(&|$)", "\1"), "[?&]+$", ""));
    return (lookup);
}

sub vcl_backend_response {
    if (bereq.url ~ "^/api/v1/videos/[A-Za-z0-9][A-Za-z0-9_-]{0,127}/") {
        # What a purge matches: the ban lurker can test it on the object alone (no request needed).
        set beresp.http.X-Video-Id = regsub(bereq.url, "^/api/v1/videos/([A-Za-z0-9][A-Za-z0-9_-]{0,127})/.*$", "\1");
    }
    if (beresp.status >= 400 && !beresp.http.Cache-Control) {
        # An error without cache headers (a manifest asked for before the video is playable, a 5xx) is not kept:
        # the built-in VCL makes it a hit-for-miss, and the next request asks the API again.
        set beresp.ttl = 0s;
    }
}

sub vcl_deliver {
    unset resp.http.X-Video-Id;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
