// The videos this browser uploaded and is still following. The API lists a creator's videos only once they
// play (GET /api/v1/creators/{id}/videos shows ready and playable ones), so the Studio remembers the ids of its
// own uploads (an upload's id is its video's id) to show them while they upload, process or after they failed.

import { refresh, session } from '../../api';

const MAX_TRACKED = 50;

function key(): string {
  return `vidplat.studio.tracked.${session().accountId ?? 'anonymous'}`;
}

export function trackedIds(): string[] {
  try {
    const value: unknown = JSON.parse(localStorage.getItem(key()) ?? '[]');
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}

export function track(videoId: string): void {
  const ids = [videoId, ...trackedIds().filter((id) => id !== videoId)].slice(0, MAX_TRACKED);
  localStorage.setItem(key(), JSON.stringify(ids));
}

export function untrack(videoId: string): void {
  localStorage.setItem(key(), JSON.stringify(trackedIds().filter((id) => id !== videoId)));
}

/** The video id of a tus upload URL (its last path segment). */
export function videoIdOf(uploadUrl: string): string {
  const path = new URL(uploadUrl, location.href).pathname.replace(/\/+$/, '');
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

// After a 401 the next request waits for new tokens, even if the one it holds has not run out by our clock.
let forced: Promise<boolean> | null = null;

export function forceRefresh(): void {
  forced ??= refresh().finally(() => {
    forced = null;
  });
}

/** An access token good for the next request (refreshed when it ran out), for callers outside api(). */
export async function freshToken(): Promise<string | null> {
  if (forced) await forced;
  const current = session();
  if (current.accessToken && Date.now() < current.expiresAt) return current.accessToken;
  await refresh();
  return session().accessToken;
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
