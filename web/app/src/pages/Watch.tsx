import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, get, session } from '../api';
import { NotFound } from '../components/NotFound';
import { Comments } from '../components/Comments';
import { Player } from '../components/Player';
import { VideoCard } from '../components/VideoCard';
import { ago, count, duration } from '../format';
import type { Engagement, Progress, Video, VideoItem } from '../types';

type Rating = 'like' | 'dislike' | null;

function Ratings({ videoId }: { videoId: string }) {
  const [totals, setTotals] = useState<Engagement | null>(null);
  const [error, setError] = useState<string | null>(null);
  const signedIn = session().accessToken !== null;
  const path = `/api/v1/videos/${encodeURIComponent(videoId)}`;
  useEffect(() => {
    get<Engagement>(`${path}/engagement`).then(setTotals, () => setTotals(null));
  }, [videoId]);
  const mine: Rating = totals?.my_rating ?? null;
  const rate = (value: 'like' | 'dislike'): void => {
    if (!totals) return;
    const next: Rating = mine === value ? null : value;
    // The rating is an event a worker applies a moment later: the totals change here at once.
    const delta = (v: 'like' | 'dislike'): number => (next === v ? 1 : 0) - (mine === v ? 1 : 0);
    const before = totals;
    setTotals({ ...totals, my_rating: next, likes: totals.likes + delta('like'), dislikes: totals.dislikes + delta('dislike') });
    const call = next ? api('PUT', `${path}/rating`, { value: next }) : api('DELETE', `${path}/rating`);
    call.catch((e: unknown) => {
      setTotals(before);
      setError(e instanceof Error ? e.message : String(e));
    });
  };
  return (
    <div class="ratings" role="group" aria-label="Rate this video">
      <button type="button" aria-pressed={mine === 'like'} disabled={!signedIn || !totals} onClick={() => rate('like')}>
        👍 <span>{totals ? count(totals.likes, 'like') : 'Like'}</span>
      </button>
      <button type="button" aria-pressed={mine === 'dislike'} disabled={!signedIn || !totals} onClick={() => rate('dislike')}>
        👎 <span>{totals ? count(totals.dislikes, 'dislike') : 'Dislike'}</span>
      </button>
      {!signedIn ? <span class="muted">Sign in to rate</span> : null}
      {error ? (
        <span role="alert" class="error">
          {error}
        </span>
      ) : null}
    </div>
  );
}

export function Watch({ videoId, params }: { videoId: string; params: URLSearchParams }) {
  const [video, setVideo] = useState<Video | null>(null);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [startAt, setStartAt] = useState<number | null>(null);
  const [related, setRelated] = useState<VideoItem[] | null>(null);
  const signedIn = session().accessToken !== null;
  const lastSaved = useRef(-1);
  const path = `/api/v1/videos/${encodeURIComponent(videoId)}`;

  useEffect(() => {
    get<Video>(path).then(
      (v) => {
        setVideo(v);
        document.title = `${v.title || 'Untitled'} · vidplat`;
      },
      (e: unknown) => {
        if (e instanceof ApiError && (e.status === 404 || e.status === 400)) setMissing(true);
        else setError(e instanceof Error ? e.message : String(e));
      },
    );
    get<{ videos: VideoItem[] }>(`${path}/related?limit=10`).then(
      (r) => setRelated(r.videos),
      () => setRelated([]),
    );
    // Where to start: ?t= in the link, else the profile's last position (unless it finished the video).
    const t = Number(params.get('t'));
    if (t > 0) setStartAt(t);
    else if (!signedIn) setStartAt(0);
    else
      get<Progress>(`/api/v1/me/progress/${encodeURIComponent(videoId)}`).then(
        (p) => setStartAt(p.finished ? 0 : p.position_s),
        () => setStartAt(0),
      );
  }, [videoId]);

  const saveProgress = (position: number, sessionId: string): void => {
    if (!session().accessToken || Math.abs(position - lastSaved.current) < 1) return;
    lastSaved.current = position;
    const limit = video?.duration_s ? video.duration_s : position;
    void api('PUT', `/api/v1/me/progress/${encodeURIComponent(videoId)}`, {
      position_s: Math.min(position, limit),
      session_id: sessionId,
    }).catch(() => undefined); // a lost save is made good by the next one (and by the player's heartbeats)
  };

  if (missing) return <NotFound what="video" />;
  if (error)
    return (
      <p role="alert" class="error">
        This video did not load: {error}
      </p>
    );
  if (!video) return <p class="muted">Loading…</p>;

  const playable = video.urls && (video.status === 'ready' || video.status === 'playable');
  return (
    <div class="watch">
      <div class="watch-main">
        {playable && video.urls && startAt !== null ? (
          <Player
            videoId={video.video_id}
            src={video.urls.hls}
            poster={video.urls.poster}
            startAt={startAt}
            onProgress={saveProgress}
          />
        ) : (
          <div class="player placeholder" role="status">
            {video.status === 'failed'
              ? `This video failed to process${video.status_reason ? `: ${video.status_reason}` : '.'}`
              : playable
                ? 'Loading…'
                : 'This video is still processing.'}
          </div>
        )}
        {video.status === 'playable' ? <p class="note">More qualities coming: this video is still being processed.</p> : null}
        <h1 class="watch-title">{video.title || 'Untitled'}</h1>
        <div class="watch-bar">
          <span class="muted">
            {[duration(video.duration_s), ago(video.created_at), video.privacy !== 'public' ? video.privacy : ''].filter(Boolean).join(' · ')}
          </span>
          <Ratings videoId={video.video_id} />
        </div>
        {video.description ? <p class="description">{video.description}</p> : null}
        {video.tags?.length ? (
          <ul class="tags" aria-label="Tags">
            {video.tags.map((tag) => (
              <li key={tag}>
                <a href={`/search?q=${encodeURIComponent(tag)}`}>#{tag}</a>
              </li>
            ))}
          </ul>
        ) : null}
        <Comments videoId={video.video_id} />
      </div>
      <aside class="related" aria-labelledby="related-title">
        <h2 id="related-title">Related</h2>
        {related === null ? (
          <p class="muted">Loading…</p>
        ) : related.length === 0 ? (
          <p class="muted">Nothing related yet.</p>
        ) : (
          <ul class="list">
            {related.map((v) => (
              <VideoCard key={v.video_id} video={v} />
            ))}
          </ul>
        )}
      </aside>
    </div>
  );
}
