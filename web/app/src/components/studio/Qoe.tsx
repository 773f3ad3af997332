// A video's QoE for its owner, as numbers (charts come later): views, startup time p50/p95, rebuffering,
// failures and watch time over a chosen range. Totals come from GET /api/v1/videos/{id}/qoe (recombined from the
// windows' sums by the API); startup percentiles cannot be recombined from windows, so they are taken here over
// the range's per-view rows (GET /api/v1/videos/{id}/views), up to the API's 1000 newest.

import { useEffect, useState } from 'preact/hooks';
import { get, query } from '../../api';
import { message } from './tracked';

const RANGES = [
  ['1', 'Last hour'],
  ['6', 'Last 6 hours'],
  ['24', 'Last 24 hours'],
] as const;

interface Totals {
  views: number;
  views_started: number;
  playback_failures: number;
  video_startup_failures: number;
  watch_time_ms: number;
  rebuffer_percentage: number | null;
  playback_failure_percentage: number | null;
}

interface ViewRow {
  video_startup_time_ms: number | null;
}

interface Numbers {
  totals: Totals;
  startups: number[];
}

function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? null;
}

function ms(value: number | null): string {
  return value === null ? '–' : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function pct(value: number | null): string {
  return value === null ? '–' : `${value.toFixed(2)} %`;
}

function watchTime(totalMs: number): string {
  const s = Math.round(totalMs / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

export function Qoe({ videoId }: { videoId: string }) {
  const [hours, setHours] = useState('24');
  const [numbers, setNumbers] = useState<Numbers | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setNumbers(null);
    setError(null);
    const to = new Date();
    const from = new Date(to.getTime() - Number(hours) * 3600_000);
    const range = { from: from.toISOString(), to: to.toISOString() };
    const path = `/api/v1/videos/${encodeURIComponent(videoId)}`;
    Promise.all([
      get<{ totals: Totals }>(`${path}/qoe${query({ ...range, granularity: 60 })}`),
      get<{ views: ViewRow[] }>(`${path}/views${query({ ...range, limit: 1000 })}`),
    ]).then(
      ([qoe, views]) => {
        const startups = views.views
          .map((v) => v.video_startup_time_ms)
          .filter((v): v is number => typeof v === 'number')
          .sort((a, b) => a - b);
        setNumbers({ totals: qoe.totals, startups });
      },
      (e: unknown) => setError(message(e)),
    );
  }, [videoId, hours]);

  const t = numbers?.totals;
  const rows: [string, string][] = t
    ? [
        ['Views', String(t.views)],
        ['Views started', String(t.views_started)],
        ['Startup time p50', ms(percentile(numbers.startups, 50))],
        ['Startup time p95', ms(percentile(numbers.startups, 95))],
        ['Rebuffering', pct(t.rebuffer_percentage)],
        ['Playback failures', `${t.playback_failures} (${pct(t.playback_failure_percentage)})`],
        ['Startup failures', String(t.video_startup_failures)],
        ['Watch time', watchTime(t.watch_time_ms)],
      ]
    : [];
  return (
    <section class="qoe" aria-label="Quality of experience">
      <label>
        Range{' '}
        <select value={hours} onChange={(e) => setHours(e.currentTarget.value)}>
          {RANGES.map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
      </label>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : !t ? (
        <p class="muted">Loading…</p>
      ) : (
        <dl class="qoe-numbers">
          {rows.map(([name, value]) => (
            <div key={name}>
              <dt>{name}</dt>
              <dd>{value}</dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}
