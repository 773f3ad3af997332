// A video's processing timeline: uploading → processing → playable → ready, or failed with its reason. Polls
// GET /api/v1/videos/{id}/status while the video is not in a final state.

import { useEffect, useState } from 'preact/hooks';
import { get } from '../../api';
import type { Status } from '../../types';

const STEPS = [
  ['uploading', 'Uploading'],
  ['processing', 'Processing'],
  ['playable', 'Playable'],
  ['ready', 'Ready'],
] as const;
const FINAL: ReadonlySet<Status> = new Set<Status>(['ready', 'failed', 'deleted']);
const POLL_MS = 2000;

interface StatusReply {
  video_id: string;
  status: Status;
  reason: string | null;
  history: { status: string; reason: string | null; changed_at: string | null }[];
}

function clock(iso: string | null | undefined): string {
  if (!iso) return '';
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? '' : at.toLocaleTimeString();
}

export function Timeline({ videoId, status, onChange }: { videoId: string; status: Status; onChange: (status: Status, reason: string | null) => void }) {
  const [reply, setReply] = useState<StatusReply | null>(null);
  const [error, setError] = useState<string | null>(null);
  const current = reply?.status ?? status;

  useEffect(() => {
    let stopped = false;
    let timer = 0;
    let last: Status | null = null;
    const poll = (): void => {
      get<StatusReply>(`/api/v1/videos/${encodeURIComponent(videoId)}/status`).then(
        (r) => {
          if (stopped) return;
          setReply(r);
          setError(null);
          if (r.status !== last) {
            last = r.status;
            onChange(r.status, r.reason);
          }
          if (!FINAL.has(r.status)) timer = window.setTimeout(poll, POLL_MS);
        },
        (e: unknown) => {
          if (stopped) return;
          setError(e instanceof Error ? e.message : String(e));
          timer = window.setTimeout(poll, POLL_MS * 3);
        },
      );
    };
    poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [videoId]);

  const reached = (name: string): string | null => {
    const rows = (reply?.history ?? []).filter((h) => h.status === name);
    return rows.length ? (rows[rows.length - 1]?.changed_at ?? null) : null;
  };
  const failed = current === 'failed';
  const index = STEPS.findIndex(([name]) => name === current);
  // Where a failed video stopped: the last step its history reached.
  const lastReached = failed ? Math.max(-1, ...STEPS.map(([name], i) => (reached(name) ? i : -1))) : index;
  return (
    <div class="timeline-box">
      <ol class="timeline" aria-label="Processing timeline" data-status={current}>
        {STEPS.map(([name, label], i) => {
          const state =
            current === 'ready' || i < lastReached || (failed && i === lastReached) ? 'done' : i === index ? 'current' : 'todo';
          const at = reached(name);
          return (
            <li key={name} class={`step ${state}`} aria-current={state === 'current' ? 'step' : undefined}>
              <span class="dot" aria-hidden="true" />
              <span class="step-name">{label}</span>
              <span class="visually-hidden">{state === 'done' ? ' (done)' : state === 'current' ? ' (now)' : ' (to come)'}</span>
              {at ? <span class="step-time muted">{clock(at)}</span> : null}
            </li>
          );
        })}
        {failed ? (
          <li class="step failed" aria-current="step">
            <span class="dot" aria-hidden="true" />
            <span class="step-name">Failed</span>
            {reply?.reason ? <span class="step-reason">{reply.reason}</span> : null}
          </li>
        ) : null}
      </ol>
      {error ? <p class="error">Status not updated: {error}</p> : null}
    </div>
  );
}
