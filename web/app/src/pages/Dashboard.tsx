// The admins' live QoE dashboard: GET /api/v1/qoe/overview (the global windows and the same per device class, in
// one answer) for a time range, in 10 s or 1 min windows, redrawn every 10 s while the range ends "now".
// Tiles give the range's numbers as text (totals recombined by the API from the windows' sums; percentiles,
// concurrent viewers and bitrate, which do not recombine, from the latest window), charts draw every window, and
// a table lists them for keyboards and screen readers. Metric definitions: shared/QOE.md.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, get, onSessionChange, query, session } from '../api';
import type { ComponentType } from 'preact';
import type { Line } from '../components/dashboard/TimeChart';
import './Dashboard.css';

const REFRESH_MS = 10_000;
const DEVICES = ['desktop', 'mobile', 'tablet', 'tv', 'console', 'other', 'unknown'] as const;
type Device = (typeof DEVICES)[number];
type Granularity = 10 | 60;

// Relative ranges follow "now" (and refresh); "custom" is a fixed from/to.
const RANGES = [
  { id: '5m', label: 'Last 5 minutes', seconds: 5 * 60 },
  { id: '15m', label: 'Last 15 minutes', seconds: 15 * 60 },
  { id: '1h', label: 'Last hour', seconds: 3600 },
  { id: '6h', label: 'Last 6 hours', seconds: 6 * 3600 },
  { id: '24h', label: 'Last 24 hours', seconds: 24 * 3600 },
  { id: '7d', label: 'Last 7 days', seconds: 7 * 24 * 3600 },
] as const;
// 10 s windows over longer ranges are too many points to draw (and to send): those ranges use 1 min windows.
const MAX_10S_RANGE_S = 6 * 3600;
const MAX_RANGE_S = 7 * 24 * 3600;
const TABLE_ROWS = 60;

export interface QoeWindow {
  window_start: string;
  window_end: string;
  final: boolean;
  views_started: number | null;
  concurrent_viewers: number | null;
  views: number | null;
  exits_before_video_start: number | null;
  exits_before_video_start_percentage: number | null;
  playback_failures: number | null;
  playback_failure_percentage: number | null;
  rebuffer_percentage: number | null;
  average_bitrate_kbps: number | null;
  vst_median_ms: number | null;
  vst_p95_ms: number | null;
}

export interface QoeTotals {
  windows: number;
  views_started: number;
  views: number;
  exits_before_video_start: number;
  playback_failures: number;
  peak_concurrent_viewers: number;
  playback_failure_percentage: number | null;
  exits_before_video_start_percentage: number | null;
  rebuffer_percentage: number | null;
}

interface Scope {
  windows: QoeWindow[];
  totals: QoeTotals;
}

export interface Overview extends Scope {
  granularity_s: Granularity;
  from: string;
  to: string;
  devices: Partial<Record<Device, Scope>>;
}

interface Range {
  from: string;
  to: string | null;
}

function fixed(value: number | null | undefined, digits: number, unit: string): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${value.toFixed(digits)}${unit}`;
}

function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return '–';
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** `<input type="datetime-local">` value (local time) of an instant, and back. */
function localInput(date: Date): string {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 16);
}

function fromLocalInput(value: string): Date | null {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** Every window of the range, oldest first, with the stored ones in place: no row means no views (counts 0, ratios
 * unknown), so the charts show the quiet windows as such instead of joining the busy ones across them. */
function grid(overview: Overview, scope: Scope): { times: number[]; rows: (QoeWindow | null)[] } {
  const step = overview.granularity_s;
  const byStart = new Map(scope.windows.map((w) => [Math.floor(Date.parse(w.window_start) / 1000), w]));
  const first = Math.ceil(Date.parse(overview.from) / 1000 / step) * step;
  const end = Date.parse(overview.to) / 1000;
  const times: number[] = [];
  const rows: (QoeWindow | null)[] = [];
  for (let t = first; t < end && times.length < 20_000; t += step) {
    times.push(t);
    rows.push(byStart.get(t) ?? null);
  }
  return { times, rows };
}

function series(rows: (QoeWindow | null)[], pick: (w: QoeWindow) => number | null, zero: boolean): (number | null)[] {
  return rows.map((w) => (w ? (pick(w) ?? null) : zero ? 0 : null));
}

function latest(scope: Scope): QoeWindow | null {
  // The newest window with views, else the newest one.
  for (let i = scope.windows.length - 1; i >= 0; i -= 1) {
    const w = scope.windows[i];
    if (w && (w.views ?? 0) > 0) return w;
  }
  return scope.windows[scope.windows.length - 1] ?? null;
}

type ChartComponent = ComponentType<{ title: string; summary: string; unit: string; times: number[]; lines: Line[] }>;
// uPlot is loaded with the dashboard only (its own chunk), so other pages, the watch page first, do not carry it.
let chartModule: Promise<ChartComponent> | null = null;

function useChart(): ChartComponent | null {
  const [chart, setChart] = useState<{ component: ChartComponent } | null>(null);
  useEffect(() => {
    chartModule ??= import('../components/dashboard/TimeChart').then((m) => m.TimeChart);
    let alive = true;
    void chartModule.then((component) => alive && setChart({ component }));
    return () => {
      alive = false;
    };
  }, []);
  return chart?.component ?? null;
}

function useIsAdmin(): { signedIn: boolean; admin: boolean } {
  const [, setTick] = useState(0);
  useEffect(() => onSessionChange(() => setTick((n) => n + 1)), []);
  const current = session();
  return { signedIn: current.accessToken !== null, admin: current.roles.includes('admin') };
}

export function Dashboard() {
  const { signedIn, admin } = useIsAdmin();
  if (!signedIn) {
    return (
      <section class="dashboard" aria-labelledby="dash-title">
        <h1 id="dash-title">QoE dashboard</h1>
        <p>
          <a href={`/signin?next=${encodeURIComponent('/dashboard')}`}>Sign in</a> with an admin account to see the
          dashboard.
        </p>
      </section>
    );
  }
  if (!admin) {
    return (
      <section class="dashboard" aria-labelledby="dash-title">
        <h1 id="dash-title">QoE dashboard</h1>
        <p role="alert">The QoE dashboard is for admins only.</p>
      </section>
    );
  }
  return <Live />;
}

function Live() {
  const [rangeId, setRangeId] = useState<string>('1h');
  const [granularity, setGranularity] = useState<Granularity>(10);
  const [device, setDevice] = useState<'all' | Device>('all');
  const [live, setLive] = useState(true);
  const now = new Date();
  const [customFrom, setCustomFrom] = useState(localInput(new Date(now.getTime() - 3600_000)));
  const [customTo, setCustomTo] = useState(localInput(now));
  const [overview, setOverview] = useState<Overview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [updatedAt, setUpdatedAt] = useState<Date | null>(null);
  const generation = useRef(0);

  const relative = RANGES.find((r) => r.id === rangeId) ?? null;
  const rangeS = relative
    ? relative.seconds
    : ((fromLocalInput(customTo)?.getTime() ?? 0) - (fromLocalInput(customFrom)?.getTime() ?? 0)) / 1000;
  const tooLongFor10s = rangeS > MAX_10S_RANGE_S;
  const effectiveGranularity: Granularity = tooLongFor10s ? 60 : granularity;

  const range = (): Range | string => {
    if (relative) return { from: new Date(Date.now() - relative.seconds * 1000).toISOString(), to: null };
    const from = fromLocalInput(customFrom);
    const to = fromLocalInput(customTo);
    if (!from || !to) return 'Enter both a start and an end time.';
    if (to <= from) return 'The end must be after the start.';
    if (to.getTime() - from.getTime() > MAX_RANGE_S * 1000) return 'A range is at most 7 days.';
    return { from: from.toISOString(), to: to.toISOString() };
  };

  const load = (): void => {
    const wanted = range();
    if (typeof wanted === 'string') {
      setError(wanted);
      return;
    }
    const mine = ++generation.current;
    setLoading(true);
    get<Overview>(`/api/v1/qoe/overview${query({ from: wanted.from, to: wanted.to, granularity: effectiveGranularity })}`).then(
      (answer) => {
        if (mine !== generation.current) return; // a newer request (other settings) is on its way
        setOverview(answer);
        setError(null);
        setUpdatedAt(new Date());
        setLoading(false);
      },
      (e: unknown) => {
        if (mine !== generation.current) return;
        setError(e instanceof ApiError && e.status === 403 ? 'The QoE dashboard is for admins only.' : e instanceof Error ? e.message : String(e));
        setLoading(false);
      },
    );
  };

  const autoRefresh = live && relative !== null;
  useEffect(() => {
    load();
    if (!autoRefresh) return;
    const timer = window.setInterval(() => {
      if (document.visibilityState === 'visible') load();
    }, REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [rangeId, effectiveGranularity, autoRefresh, relative ? '' : `${customFrom}|${customTo}`]);

  return (
    <section class="dashboard" aria-labelledby="dash-title">
      <div class="dash-head">
        <h1 id="dash-title">QoE dashboard</h1>
        <p class="muted" role="status" aria-live="polite">
          {loading && !overview ? 'Loading…' : updatedAt ? `Updated ${updatedAt.toLocaleTimeString()}` : ''}
          {autoRefresh ? ' · refreshing every 10 s' : ''}
        </p>
      </div>
      <form
        class="dash-controls"
        aria-label="Dashboard settings"
        onSubmit={(event) => {
          event.preventDefault();
          load();
        }}
      >
        <div class="dash-field">
          <label for="dash-range">Time range</label>
          <select id="dash-range" value={rangeId} onChange={(e) => setRangeId(e.currentTarget.value)}>
            {RANGES.map((r) => (
              <option key={r.id} value={r.id}>
                {r.label}
              </option>
            ))}
            <option value="custom">Custom range…</option>
          </select>
        </div>
        {relative === null ? (
          <>
            <div class="dash-field">
              <label for="dash-from">From</label>
              <input id="dash-from" type="datetime-local" value={customFrom} onChange={(e) => setCustomFrom(e.currentTarget.value)} />
            </div>
            <div class="dash-field">
              <label for="dash-to">To</label>
              <input id="dash-to" type="datetime-local" value={customTo} onChange={(e) => setCustomTo(e.currentTarget.value)} />
            </div>
          </>
        ) : null}
        <div class="dash-field">
          <label for="dash-window">Window</label>
          <select
            id="dash-window"
            value={String(effectiveGranularity)}
            onChange={(e) => setGranularity(e.currentTarget.value === '60' ? 60 : 10)}
            aria-describedby={tooLongFor10s ? 'dash-window-note' : undefined}
          >
            <option value="10" disabled={tooLongFor10s}>
              10 seconds
            </option>
            <option value="60">1 minute</option>
          </select>
        </div>
        <div class="dash-field">
          <label for="dash-device">Device class</label>
          <select id="dash-device" value={device} onChange={(e) => setDevice(e.currentTarget.value as 'all' | Device)}>
            <option value="all">All devices</option>
            {DEVICES.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </div>
        <label class="check">
          <input type="checkbox" checked={live} disabled={relative === null} onChange={(e) => setLive(e.currentTarget.checked)} />
          Refresh every 10 s
        </label>
        <button type="submit">Refresh now</button>
      </form>
      {tooLongFor10s ? (
        <p id="dash-window-note" class="muted">
          Ranges over 6 hours use 1 minute windows.
        </p>
      ) : null}
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {overview ? <Report overview={overview} device={device} /> : null}
    </section>
  );
}

function Report({ overview, device }: { overview: Overview; device: 'all' | Device }) {
  const scope: Scope = device === 'all' ? overview : (overview.devices[device] ?? { windows: [], totals: overview.totals });
  const empty = device !== 'all' && !overview.devices[device];
  const { times, rows } = useMemo(() => grid(overview, scope), [overview, device]);
  const last = latest(scope);
  const t = scope.totals;
  const scopeName = device === 'all' ? 'all devices' : device;
  const windowName = overview.granularity_s === 10 ? '10 s' : '1 min';

  const charts = useMemo(() => {
    const line = (label: string, color: string, pick: (w: QoeWindow) => number | null, zero = false): Line => ({
      label,
      color,
      values: series(rows, pick, zero),
    });
    return [
      { title: 'Views started', unit: '', lines: [line('Views started', '#6ea8ff', (w) => w.views_started, true)] },
      { title: 'Concurrent viewers', unit: '', lines: [line('Concurrent viewers', '#7ee0a1', (w) => w.concurrent_viewers, true)] },
      {
        title: 'Startup time',
        unit: ' ms',
        lines: [line('p50', '#ffd166', (w) => w.vst_median_ms), line('p95', '#ff8a80', (w) => w.vst_p95_ms)],
      },
      { title: 'Rebuffering', unit: ' %', lines: [line('Rebuffer %', '#c792ea', (w) => w.rebuffer_percentage)] },
      { title: 'Playback failures', unit: ' %', lines: [line('Failure %', '#ff8a80', (w) => w.playback_failure_percentage)] },
      {
        title: 'Exits before start',
        unit: '',
        lines: [line('Exits before start', '#f78c6c', (w) => w.exits_before_video_start, true)],
      },
      { title: 'Average bitrate', unit: ' kbps', lines: [line('Bitrate', '#89ddff', (w) => w.average_bitrate_kbps)] },
    ];
  }, [rows]);

  const summary = (lines: Line[], unit: string): string => {
    const parts = lines.map((l) => {
      const known = l.values.filter((v): v is number => v !== null);
      const lastValue = known.length ? known[known.length - 1] : null;
      const peak = known.length ? Math.max(...known) : null;
      return `${l.label} latest ${fixed(lastValue, 1, unit)}, highest ${fixed(peak, 1, unit)}`;
    });
    return `${times.length} windows of ${windowName}. ${parts.join('; ')}.`;
  };

  const TimeChart = useChart();
  const tableRows = scope.windows.slice(-TABLE_ROWS).reverse();
  return (
    <>
      {empty ? <p class="muted">No {scopeName} views in this range.</p> : null}
      <h2 class="visually-hidden">Summary for {scopeName}</h2>
      <dl class="dash-tiles">
        <div>
          <dt>Views started</dt>
          <dd>{t.views_started}</dd>
        </div>
        <div>
          <dt>Concurrent viewers</dt>
          <dd>{last?.concurrent_viewers ?? 0}</dd>
          <dd class="muted">peak {t.peak_concurrent_viewers}</dd>
        </div>
        <div>
          <dt>Startup time p50 / p95</dt>
          <dd>
            {ms(last?.vst_median_ms)} / {ms(last?.vst_p95_ms)}
          </dd>
          <dd class="muted">latest window</dd>
        </div>
        <div>
          <dt>Rebuffering</dt>
          <dd>{fixed(t.rebuffer_percentage, 2, ' %')}</dd>
        </div>
        <div>
          <dt>Playback failures</dt>
          <dd>{fixed(t.playback_failure_percentage, 2, ' %')}</dd>
          <dd class="muted">{t.playback_failures} of {t.views} views</dd>
        </div>
        <div>
          <dt>Exits before start</dt>
          <dd>{t.exits_before_video_start}</dd>
          <dd class="muted">{fixed(t.exits_before_video_start_percentage, 2, ' %')} of views</dd>
        </div>
        <div>
          <dt>Average bitrate</dt>
          <dd>{fixed(last?.average_bitrate_kbps, 0, ' kbps')}</dd>
          <dd class="muted">latest window</dd>
        </div>
      </dl>
      <h2 class="visually-hidden">Charts, {windowName} windows</h2>
      <div class="dash-charts">
        {TimeChart
          ? charts.map((c) => (
              <TimeChart key={c.title} title={c.title} unit={c.unit} times={times} lines={c.lines} summary={summary(c.lines, c.unit)} />
            ))
          : null}
      </div>
      <details class="dash-table">
        <summary>
          Windows as a table ({scopeName}, newest {Math.min(TABLE_ROWS, scope.windows.length)} of {scope.windows.length})
        </summary>
        <div class="dash-table-scroll" tabIndex={0} role="region" aria-label="QoE windows table">
          <table>
            <thead>
              <tr>
                <th scope="col">Window start</th>
                <th scope="col">Views started</th>
                <th scope="col">Concurrent</th>
                <th scope="col">Startup p50</th>
                <th scope="col">Startup p95</th>
                <th scope="col">Rebuffer</th>
                <th scope="col">Failures</th>
                <th scope="col">Exits before start</th>
                <th scope="col">Bitrate</th>
              </tr>
            </thead>
            <tbody>
              {tableRows.map((w) => (
                <tr key={w.window_start}>
                  <th scope="row">
                    {clock(w.window_start)}
                    {w.final ? '' : ' (open)'}
                  </th>
                  <td>{w.views_started ?? 0}</td>
                  <td>{w.concurrent_viewers ?? 0}</td>
                  <td>{ms(w.vst_median_ms)}</td>
                  <td>{ms(w.vst_p95_ms)}</td>
                  <td>{fixed(w.rebuffer_percentage, 2, ' %')}</td>
                  <td>{fixed(w.playback_failure_percentage, 2, ' %')}</td>
                  <td>{w.exits_before_video_start ?? 0}</td>
                  <td>{fixed(w.average_bitrate_kbps, 0, ' kbps')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </>
  );
}
