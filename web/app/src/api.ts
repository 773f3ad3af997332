// The API client and the signed-in session.
//
// The access token lives only in memory. The refresh token is never seen by this code: the token routes are
// called with `X-Token-Delivery: cookie`, so the API keeps it in an HttpOnly, SameSite=Strict cookie limited to
// /api/v1/auth (api/refresh_cookie.py) and leaves it out of the JSON. On page load a refresh with that cookie
// gives the access token. It is single use, so a refresh is shared by every caller that needs one at the same
// moment, and serialized across tabs (Web Locks) so that two tabs never spend the same cookie.
//
// localStorage keeps only two non-secrets: the selected profile, and a hint that a sign-in happened (so an
// anonymous visit does not ask for a refresh that can only fail).

import type { AccessToken, Me, Tokens } from './types';

const SIGNED_IN_KEY = 'vidplat.signedIn';
const PROFILE_KEY = 'vidplat.profile';
const LEGACY_REFRESH_KEY = 'vidplat.refresh'; // where earlier builds kept the refresh token: removed on start
const COOKIE_MODE = { 'X-Token-Delivery': 'cookie' } as const;
const REFRESH_LOCK = 'vidplat.refresh';

/** A token answer in cookie mode: everything but the refresh token (the cookie has it). */
type CookieTokens = Omit<Tokens, 'refresh_token'> & { refresh_expires_in: number };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(ApiError.describe(status, detail));
  }

  static describe(status: number, detail: unknown): string {
    if (detail && typeof detail === 'object') {
      const d = detail as Record<string, unknown>;
      const text = d['title'] ?? d['error'] ?? d['message'] ?? d['detail'];
      if (typeof text === 'string') return text;
    }
    return `HTTP ${status}`;
  }
}

interface SessionState {
  accessToken: string | null;
  expiresAt: number;
  accountId: string | null;
  profileId: string | null;
  roles: string[];
}

type Listener = () => void;

const state: SessionState = { accessToken: null, expiresAt: 0, accountId: null, profileId: null, roles: [] };
const listeners = new Set<Listener>();
let refreshing: Promise<boolean> | null = null;

function notify(): void {
  for (const listener of listeners) listener();
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function session(): Readonly<SessionState> {
  return state;
}

export function accessToken(): string | null {
  return state.accessToken;
}

/** Whether a sign-in happened in this browser (the cookie itself cannot be seen from here). */
export function hasRefreshToken(): boolean {
  return localStorage.getItem(SIGNED_IN_KEY) !== null;
}

function adopt(tokens: CookieTokens | AccessToken): void {
  state.accessToken = tokens.access_token;
  // Refresh a little before the token runs out, so a request never leaves with an expired one.
  state.expiresAt = Date.now() + Math.max(tokens.expires_in - 30, 5) * 1000;
  state.accountId = tokens.account_id;
  state.profileId = tokens.profile_id;
  state.roles = tokens.roles;
  if ('refresh_expires_in' in tokens) localStorage.setItem(SIGNED_IN_KEY, '1');
  localStorage.setItem(PROFILE_KEY, tokens.profile_id);
  notify();
}

function forget(): void {
  state.accessToken = null;
  state.expiresAt = 0;
  state.accountId = null;
  state.profileId = null;
  state.roles = [];
  localStorage.removeItem(SIGNED_IN_KEY);
  localStorage.removeItem(PROFILE_KEY);
  notify();
}

async function send(
  method: string,
  path: string,
  body?: unknown,
  token?: string | null,
  extra?: Record<string, string>,
): Promise<Response> {
  const headers: Record<string, string> = { ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['Authorization'] = `Bearer ${token}`;
  return fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body), credentials: 'same-origin' });
}

/** A token route in cookie mode (the API sets, reads or clears the refresh cookie). */
function sendAuth(path: string, body?: unknown, token?: string | null): Promise<Response> {
  return send('POST', path, body, token, COOKIE_MODE);
}

/** `task` while holding the tabs' refresh lock, where the browser has Web Locks (secure contexts). */
function exclusive<T>(task: () => Promise<T>): Promise<T> {
  return 'locks' in navigator ? (navigator.locks.request(REFRESH_LOCK, task) as Promise<T>) : task();
}

async function parse<T>(reply: Response): Promise<T> {
  const text = await reply.text();
  const data: unknown = text ? JSON.parse(text) : {};
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data as T;
}

/** New tokens from the refresh cookie; false (and signed out) when it is gone or refused. */
export function refresh(): Promise<boolean> {
  refreshing ??= exclusive(async () => {
    const profileId = localStorage.getItem(PROFILE_KEY);
    try {
      let reply = await sendAuth('/api/v1/auth/refresh', profileId ? { profile_id: profileId } : {});
      if (reply.status === 404 && profileId) {
        // The profile is gone (removed on another device): the login stays, on its own profile.
        localStorage.removeItem(PROFILE_KEY);
        reply = await sendAuth('/api/v1/auth/refresh', {});
      }
      if (reply.status === 401 || reply.status === 404) {
        forget();
        return false;
      }
      adopt(await parse<CookieTokens>(reply));
      return true;
    } catch {
      return false; // the network: the cookie is still there for the next try
    }
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function currentToken(): Promise<string | null> {
  if (state.accessToken && Date.now() < state.expiresAt) return state.accessToken;
  if (hasRefreshToken() && (await refresh())) return state.accessToken;
  return null;
}

/** A JSON call; signed in when a session exists, retried once after a refresh on 401. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const token = await currentToken();
  let reply = await send(method, path, body, token);
  if (reply.status === 401 && token && (await refresh())) reply = await send(method, path, body, state.accessToken);
  return parse<T>(reply);
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);

export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export async function signUp(email: string, password: string, displayName: string, role: 'viewer' | 'creator'): Promise<void> {
  const body = { email, password, role, display_name: displayName || null };
  adopt(await parse<CookieTokens>(await sendAuth('/api/v1/auth/signup', body)));
}

export async function signIn(email: string, password: string): Promise<void> {
  adopt(await parse<CookieTokens>(await sendAuth('/api/v1/auth/login', { email, password })));
}

export async function chooseProfile(profileId: string): Promise<void> {
  adopt(await api<AccessToken>('POST', '/api/v1/auth/token', { profile_id: profileId }));
}

export async function me(): Promise<Me> {
  return get<Me>('/api/v1/me');
}

export async function signOut(everywhere = false): Promise<void> {
  try {
    // Both clear this browser's cookie; logout-all also revokes every other login of the account.
    const reply = everywhere ? await sendAuth('/api/v1/auth/logout-all', undefined, await currentToken()) : null;
    if (reply === null || !reply.ok) await sendAuth('/api/v1/auth/logout');
    if (reply !== null && !reply.ok) await parse(reply);
  } finally {
    forget();
  }
}

/** On start: the refresh cookie becomes a session (or is dropped). */
export async function restoreSession(): Promise<void> {
  // Earlier builds kept the refresh token here, readable by any script: it is moved into the cookie (a refresh
  // in cookie mode with the token in the body) and deleted.
  const legacy = localStorage.getItem(LEGACY_REFRESH_KEY);
  if (legacy !== null) {
    localStorage.removeItem(LEGACY_REFRESH_KEY);
    try {
      const reply = await sendAuth('/api/v1/auth/refresh', { refresh_token: legacy });
      if (reply.ok) {
        adopt(await parse<CookieTokens>(reply));
        return;
      }
    } catch {
      // the network: the session starts signed out
    }
  }
  if (hasRefreshToken()) await refresh();
}
