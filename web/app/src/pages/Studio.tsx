// The Studio (creators): upload from the browser (tus, resumable), the creator's videos with each one's
// processing timeline, edits, deletes and per-video QoE.
//
// The list joins two sources: the API's list of the creator's videos (GET /api/v1/creators/{id}/videos, which
// holds only videos that play) and the videos this browser uploaded (components/studio/tracked.ts), read one by
// one, so uploads still in flight, processing or failed show too.

import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, onSessionChange, session } from '../api';
import { navigate } from '../router';
import { Uploader } from '../components/studio/Uploader';
import { VideoRow, type StudioVideo } from '../components/studio/VideoRow';
import { message, trackedIds, untrack } from '../components/studio/tracked';
import type { Video } from '../types';
import '../components/studio/studio.css';

function newestFirst(a: StudioVideo, b: StudioVideo): number {
  return (b.created_at ?? '\uffff').localeCompare(a.created_at ?? '\uffff');
}

async function loadVideos(accountId: string): Promise<StudioVideo[]> {
  const listed = await get<{ videos: StudioVideo[] }>(`/api/v1/creators/${encodeURIComponent(accountId)}/videos?limit=100`);
  const byId = new Map(listed.videos.map((v) => [v.video_id, v]));
  const others = trackedIds().filter((id) => !byId.has(id));
  const fetched = await Promise.all(
    others.map((id) =>
      get<Video>(`/api/v1/videos/${encodeURIComponent(id)}`).catch((e: unknown) => {
        if (e instanceof ApiError && e.status === 404) untrack(id); // deleted (or never created)
        return null;
      }),
    ),
  );
  for (const video of fetched) if (video) byId.set(video.video_id, video);
  return [...byId.values()].sort(newestFirst);
}

export function Studio() {
  const [, setTick] = useState(0);
  useEffect(() => onSessionChange(() => setTick((n) => n + 1)), []);
  const current = session();
  const [videos, setVideos] = useState<StudioVideo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const creator = current.roles.includes('creator');

  const reload = (): void => {
    if (!current.accountId) return;
    loadVideos(current.accountId).then(
      (list) => {
        setVideos(list);
        setError(null);
      },
      (e: unknown) => setError(message(e)),
    );
  };
  useEffect(() => {
    if (!current.accessToken) navigate(`/signin?next=${encodeURIComponent('/studio')}`, true);
    else if (creator) reload();
  }, [current.accountId, creator]);

  if (!current.accessToken) return <p class="muted">Signing in…</p>;
  if (!creator)
    return (
      <section class="empty" aria-labelledby="studio-title">
        <h1 id="studio-title">Studio</h1>
        <p>The Studio is for creator accounts. Sign up as a creator to upload videos.</p>
      </section>
    );

  const update = (video: StudioVideo): void => {
    setVideos((list) => (list ?? []).map((v) => (v.video_id === video.video_id ? { ...v, ...video } : v)));
  };
  const deleted = (videoId: string): void => {
    untrack(videoId);
    setVideos((list) => (list ?? []).filter((v) => v.video_id !== videoId));
    setNotice('The video was deleted.');
  };
  return (
    <div class="studio">
      <h1>Studio</h1>
      <Uploader
        onCreated={() => {
          setNotice(null);
          reload();
        }}
        onFinished={() => reload()}
      />
      <section aria-labelledby="videos-title">
        <h2 id="videos-title">Your videos</h2>
        <p role="status" class="muted">
          {notice ?? ''}
        </p>
        {error ? (
          <p role="alert" class="error">
            The list did not load: {error}{' '}
            <button type="button" onClick={reload}>
              Try again
            </button>
          </p>
        ) : null}
        {videos === null ? (
          error ? null : (
            <p class="muted">Loading…</p>
          )
        ) : videos.length === 0 ? (
          <p class="muted">No videos yet: upload one above.</p>
        ) : (
          <ul class="studio-videos">
            {videos.map((video) => (
              <VideoRow key={video.video_id} video={video} onUpdate={update} onDeleted={deleted} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
