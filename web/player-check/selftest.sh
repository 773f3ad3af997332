#!/usr/bin/env bash
# Self-test of the player checker, independent of the platform's backend:
#   1. make an 8 s H.264/AAC test stream with ffmpeg, as HLS (fMP4) and DASH,
#      in a temporary directory;
#   2. serve it with serve-static.mjs (loopback, random port, CORS *);
#   3. run check.mjs with hls.js on the HLS stream and dash.js on the DASH
#      stream; each must print ok:true with a ttff, and the media server's log
#      must show that every segment of the stream was fetched.
#
#   bash selftest.sh          # the two checks above
#   bash selftest.sh --full   # also shaka-player on both, and --cmcd with a
#                             # collector for every player (checks the CMCD
#                             # session id on segment requests + collector POSTs)
#
# Needs: node >= 20, ffmpeg, Debian's chromium (/usr/bin/chromium or
# $CHROMIUM_PATH) and `npm ci` done here (done automatically if node_modules
# is missing). Prints each result JSON on stdout, then
# "selftest: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

FULL=0
for a in "$@"; do
  case "$a" in
    --full) FULL=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "selftest: unknown argument $a" >&2; exit 2 ;;
  esac
done

log() { echo "selftest: $*" >&2; }

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$CHROMIUM" = /usr/bin/chromium ]; then
    log "chromium missing: installing Debian's chromium with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  else
    log "no chromium at $CHROMIUM: install it (apt-get install -y chromium) or set CHROMIUM_PATH"
    exit 3
  fi
fi
command -v ffmpeg >/dev/null || { log "ffmpeg not found (apt-get install -y ffmpeg)"; exit 3; }
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/hls.js ] || [ ! -d node_modules/dashjs ]; then
  log "installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund >&2; else npm install --no-audit --no-fund >&2; fi
fi

WORK="$(mktemp -d -t player-check-selftest.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

MEDIA="$WORK/media"
mkdir -p "$MEDIA/hls" "$MEDIA/dash"
SRC=(-f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 8
     -c:v libx264 -pix_fmt yuv420p -profile:v main -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 96k)
log "generating test streams in $MEDIA"
ffmpeg -nostdin -hide_banner -loglevel error -y "${SRC[@]}" \
  -f hls -hls_segment_type fmp4 -hls_time 2 -hls_playlist_type vod \
  -hls_fmp4_init_filename init.mp4 -hls_segment_filename "$MEDIA/hls/seg_%03d.m4s" "$MEDIA/hls/index.m3u8"
ffmpeg -nostdin -hide_banner -loglevel error -y "${SRC[@]}" \
  -f dash -seg_duration 2 -use_template 1 -use_timeline 0 "$MEDIA/dash/manifest.mpd"

SERVER_LOG="$WORK/requests.jsonl"
node serve-static.mjs --root "$MEDIA" --log "$SERVER_LOG" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 100); do
  BASE="$(awk '/^READY /{print $2; exit}' "$WORK/server.out" 2>/dev/null || true)"
  [ -n "$BASE" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; log "media server died"; exit 3; }
  sleep 0.1
done
[ -n "$BASE" ] || { log "media server did not start"; exit 3; }
log "media served at $BASE"

PASSED=0
FAILED=0

# run_check NAME PLAYER MANIFEST_PATH EXPECTED_SEGMENT_REGEX [extra check.mjs args...]
run_check() {
  local name="$1" player="$2" manifest="$3" segs="$4"; shift 4
  local out="$WORK/$name.json" rc=0 sid=""
  touch "$SERVER_LOG"; cp "$SERVER_LOG" "$SERVER_LOG.before"
  log "running: node check.mjs --player $player --url $BASE$manifest $* --json"
  node check.mjs --player "$player" --url "$BASE$manifest" "$@" --json >"$out" 2>"$WORK/$name.err" || rc=$?
  echo "$name: $(cat "$out")"
  # Lines the media server logged during this run only.
  tail -n +"$(( $(wc -l <"$SERVER_LOG.before") + 1 ))" "$SERVER_LOG" >"$SERVER_LOG.tmp"
  if node - "$out" "$SERVER_LOG.tmp" "$MEDIA" "$manifest" "$segs" "$rc" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [out, reqLog, media, manifest, segRe, rc] = process.argv.slice(2);
const r = JSON.parse(fs.readFileSync(out, 'utf8'));
const reqs = fs.readFileSync(reqLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const problems = [];
if (rc !== '0') problems.push(`exit code ${rc}`);
if (r.ok !== true) problems.push(`ok=${r.ok} (${r.failure})`);
if (!(typeof r.ttff_ms === 'number' && r.ttff_ms > 0)) problems.push(`no ttff (${r.ttff_ms})`);
if (r.ended !== true) problems.push('no ended event');
if (r.errors.length) problems.push(`${r.errors.length} errors`);
if (!(r.total_frames > 0)) problems.push('no frames decoded');
// Every media segment of the stream (video rendition + audio) must have been fetched.
const dir = path.join(media, path.dirname(manifest));
const re = new RegExp(segRe);
const expected = fs.readdirSync(dir).filter((f) => re.test(f));
const fetched = new Set(reqs.filter((q) => q.method === 'GET' && q.status < 400).map((q) => path.basename(q.url.split('?')[0])));
const missing = expected.filter((f) => !fetched.has(f));
if (!expected.length) problems.push('no expected segments found on disk');
if (missing.length) problems.push(`segments never fetched: ${missing.join(' ')}`);
if (r.cmcd) {
  const sid = r.cmcd_session_id;
  const segReqs = reqs.filter((q) => q.method === 'GET' && re.test(path.basename(q.url.split('?')[0])));
  const withSid = segReqs.filter((q) => decodeURIComponent(q.url).includes(`sid="${sid}"`));
  if (!sid) problems.push('no cmcd_session_id');
  if (withSid.length !== segReqs.length) problems.push(`CMCD sid on ${withSid.length}/${segReqs.length} segment requests`);
  if (r.cmcd_collector) {
    const posts = reqs.filter((q) => q.method === 'POST' && (q.body || '').includes(`sid="${sid}"`));
    if (!posts.length) problems.push('collector got no CMCD report with the session id');
  }
}
if (problems.length) {
  console.error(`  FAIL: ${problems.join('; ')}`);
  process.exit(1);
}
console.error(`  ok: ttff ${r.ttff_ms} ms, ${r.current_time_s}/${r.duration_s} s, ${expected.length} segments fetched` +
  (r.cmcd ? `, CMCD sid ${r.cmcd_session_id}` : ''));
EOF
  then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); sed 's/^/    /' "$WORK/$name.err" >&2; fi
}

HLS_SEGS='^(init\.mp4|seg_[0-9]+\.m4s)$'
# ffmpeg's DASH muxer may write one extra tiny audio chunk past the MPD
# duration (AAC priming); players rightly never ask for it, so only the
# chunks the MPD covers (4 x 2 s) are expected.
DASH_SEGS='^(init-stream[0-9]+\.m4s|chunk-stream[0-9]+-0000[1-4]\.m4s)$'

run_check hls hls hls/index.m3u8 "$HLS_SEGS"
run_check dash dash dash/manifest.mpd "$DASH_SEGS"
if [ "$FULL" = 1 ]; then
  run_check shaka-hls shaka hls/index.m3u8 "$HLS_SEGS"
  run_check shaka-dash shaka dash/manifest.mpd "$DASH_SEGS"
  run_check hls-cmcd hls hls/index.m3u8 "$HLS_SEGS" --cmcd-collector "${BASE}cmcd"
  run_check dash-cmcd dash dash/manifest.mpd "$DASH_SEGS" --cmcd-collector "${BASE}cmcd"
  run_check shaka-cmcd shaka dash/manifest.mpd "$DASH_SEGS" --cmcd-collector "${BASE}cmcd"
fi

echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
