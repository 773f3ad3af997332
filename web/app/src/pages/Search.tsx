import { useEffect, useState } from 'preact/hooks';
import { get, query } from '../api';
import { VideoCard } from '../components/VideoCard';
import { navigate } from '../router';
import type { SearchPage } from '../types';

const PAGE_SIZE = 20;

// The API's filters as the page offers them: duration ranges in seconds and upload dates as ranges back from now.
const DURATIONS: Record<string, [number | null, number | null]> = {
  any: [null, null],
  short: [null, 240],
  medium: [240, 1200],
  long: [1200, null],
};
const UPLOADED: Record<string, number | null> = { any: null, day: 1, week: 7, month: 30, year: 365 };

function since(days: number | null): string | null {
  return days === null ? null : new Date(Date.now() - days * 86400_000).toISOString();
}

export function Search({ params }: { params: URLSearchParams }) {
  const q = params.get('q')?.trim() ?? '';
  const length = params.get('duration') ?? 'any';
  const uploaded = params.get('uploaded') ?? 'any';
  const page = Math.max(1, Number(params.get('page')) || 1);
  const [result, setResult] = useState<SearchPage | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!q) return;
    let live = true;
    setResult(null);
    setError(null);
    const [min, max] = DURATIONS[length] ?? [null, null];
    const path =
      '/api/v1/search' +
      query({ q, page, limit: PAGE_SIZE, min_duration: min, max_duration: max, uploaded_after: since(UPLOADED[uploaded] ?? null) });
    get<SearchPage>(path).then(
      (r) => live && setResult(r),
      (e: unknown) => live && setError(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      live = false;
    };
  }, [q, length, uploaded, page]);

  const go = (changes: Record<string, string | number | null>): void => {
    const next = { q, duration: length === 'any' ? null : length, uploaded: uploaded === 'any' ? null : uploaded, page: null, ...changes };
    navigate('/search' + query(next));
  };
  const pages = result ? Math.max(1, Math.ceil(result.total / result.limit)) : 1;

  return (
    <section class="search" aria-labelledby="search-title">
      <h1 id="search-title">{q ? `Results for “${q}”` : 'Search'}</h1>
      <div class="filters">
        <label>
          Duration{' '}
          <select value={length} onChange={(e) => go({ duration: e.currentTarget.value === 'any' ? null : e.currentTarget.value })}>
            <option value="any">Any</option>
            <option value="short">Under 4 minutes</option>
            <option value="medium">4–20 minutes</option>
            <option value="long">Over 20 minutes</option>
          </select>
        </label>
        <label>
          Uploaded{' '}
          <select value={uploaded} onChange={(e) => go({ uploaded: e.currentTarget.value === 'any' ? null : e.currentTarget.value })}>
            <option value="any">Any time</option>
            <option value="day">Today</option>
            <option value="week">This week</option>
            <option value="month">This month</option>
            <option value="year">This year</option>
          </select>
        </label>
      </div>
      {!q ? <p class="muted">Type words to look for in titles, descriptions and tags.</p> : null}
      {error ? (
        <p role="alert" class="error">
          Search failed: {error}
        </p>
      ) : null}
      {q && !result && !error ? <p class="muted">Searching…</p> : null}
      {result ? (
        <>
          <p class="muted" aria-live="polite">
            {result.total} {result.total === 1 ? 'video' : 'videos'}
          </p>
          <ul class="grid results">
            {result.videos.map((v) => (
              <VideoCard key={v.video_id} video={v} />
            ))}
          </ul>
          {pages > 1 ? (
            <nav class="pager" aria-label="Result pages">
              <button type="button" disabled={page <= 1} onClick={() => go({ page: page - 1 === 1 ? null : page - 1 })}>
                Previous
              </button>
              <span>
                Page {page} of {pages}
              </span>
              <button type="button" disabled={page >= pages} onClick={() => go({ page: page + 1 })}>
                Next
              </button>
            </nav>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
