import { useEffect, useState } from 'preact/hooks';
import { get, session } from '../api';
import { Shelf, VideoCard } from '../components/VideoCard';
import type { VideoItem, WatchEntry } from '../types';

interface Shelves {
  continueWatching: WatchEntry[] | null;
  trending: VideoItem[] | null;
  newest: VideoItem[] | null;
  forYou: VideoItem[] | null;
  error: string | null;
}

const EMPTY: Shelves = { continueWatching: null, trending: null, newest: null, forYou: null, error: null };

export function Home() {
  const [shelves, setShelves] = useState<Shelves>(EMPTY);
  const signedIn = session().accessToken !== null;
  const profile = session().profileId;

  useEffect(() => {
    let live = true;
    const put = (patch: Partial<Shelves>): void => {
      if (live) setShelves((s) => ({ ...s, ...patch }));
    };
    const failed = (error: unknown): void => put({ error: error instanceof Error ? error.message : String(error) });
    setShelves(EMPTY);
    get<{ videos: VideoItem[] }>('/api/v1/recommendations/trending?limit=12').then((r) => put({ trending: r.videos }), failed);
    get<{ videos: VideoItem[] }>('/api/v1/videos?sort=newest&limit=12').then((r) => put({ newest: r.videos }), failed);
    get<{ videos: VideoItem[] }>('/api/v1/recommendations/for-you?limit=12').then((r) => put({ forYou: r.videos }), failed);
    if (signedIn) {
      get<{ continue_watching: WatchEntry[] }>('/api/v1/me/continue-watching?limit=12').then(
        (r) => put({ continueWatching: r.continue_watching }),
        failed,
      );
    }
    return () => {
      live = false;
    };
  }, [signedIn, profile]);

  return (
    <div class="home">
      <h1 class="visually-hidden">Home</h1>
      {shelves.error ? (
        <p role="alert" class="error">
          Something did not load: {shelves.error}
        </p>
      ) : null}
      {signedIn && shelves.continueWatching?.length ? (
        <section class="shelf" aria-labelledby="shelf-continue">
          <h2 id="shelf-continue">Continue watching</h2>
          <ul class="grid">
            {shelves.continueWatching.map((entry) => (
              <VideoCard
                key={entry.video_id}
                progress={entry.position_s}
                video={{
                  video_id: entry.video_id,
                  title: entry.title ?? null,
                  duration_s: entry.duration_s ?? null,
                  privacy: 'public',
                  status: 'ready',
                  urls: { hls: '', dash: '', poster: `/api/v1/videos/${encodeURIComponent(entry.video_id)}/poster.jpg` },
                }}
              />
            ))}
          </ul>
        </section>
      ) : null}
      <Shelf title="Trending" videos={shelves.trending} empty="Nothing watched in the last 24 hours." />
      <Shelf title={signedIn ? 'For you' : 'Recommended'} videos={shelves.forYou} />
      <Shelf title="Newest" videos={shelves.newest} empty="No videos yet." />
    </div>
  );
}
