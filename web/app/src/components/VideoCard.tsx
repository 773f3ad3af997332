import type { VideoItem } from '../types';
import { ago, count, duration } from '../format';

export function VideoCard({ video, progress }: { video: VideoItem; progress?: number | undefined }) {
  const title = video.title || 'Untitled';
  const poster = video.urls?.poster;
  const d = video.duration_s;
  const href = `/watch/${encodeURIComponent(video.video_id)}${progress ? `?t=${Math.floor(progress)}` : ''}`;
  return (
    <li class="card">
      <a href={href} class="card-link">
        <div class="thumb">
          {poster ? <img
              src={poster}
              alt=""
              loading="lazy"
              width={320}
              height={180}
              onError={(e) => {
                e.currentTarget.style.visibility = 'hidden'; // no poster (yet): the blank frame shows
              }}
            /> : <div class="thumb-blank" />}
          {d ? <span class="badge">{duration(d)}</span> : null}
          {progress && d ? (
            <div class="progress" aria-hidden="true">
              <div class="progress-bar" style={{ width: `${Math.min(100, (100 * progress) / d)}%` }} />
            </div>
          ) : null}
        </div>
        <span class="card-title">{title}</span>
      </a>
      <span class="card-meta">
        {[video.views !== undefined ? count(video.views, 'view') : '', ago(video.created_at)].filter(Boolean).join(' · ')}
      </span>
    </li>
  );
}

export function Shelf({ title, videos, empty }: { title: string; videos: VideoItem[] | null; empty?: string }) {
  const id = `shelf-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return (
    <section class="shelf" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {videos === null ? (
        <p class="muted">Loading…</p>
      ) : videos.length === 0 ? (
        <p class="muted">{empty ?? 'Nothing here yet.'}</p>
      ) : (
        <ul class="grid">
          {videos.map((v) => (
            <VideoCard key={v.video_id} video={v} />
          ))}
        </ul>
      )}
    </section>
  );
}
