// The API client and the signed-in session.
//
// The access token lives only in memory. The refresh token is kept in localStorage until the API sets it as an
// HttpOnly, SameSite=Strict cookie for the web app (issue 13's security item, not built yet); it is single use,
// so a refresh is shared by every caller that needs one at the same moment.

import type { AccessToken, Me, Tokens } from './types';

const REFRESH_KEY = 'vidplat.refresh';
const PROFILE_KEY = 'vidplat.profile';

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

export function hasRefreshToken(): boolean {
  return localStorage.getItem(REFRESH_KEY) !== null;
}

function adopt(tokens: Tokens | AccessToken): void {
  state.accessToken = tokens.access_token;
  // Refresh a little before the token runs out, so a request never leaves with an expired one.
  state.expiresAt = Date.now() + Math.max(tokens.expires_in - 30, 5) * 1000;
  state.accountId = tokens.account_id;
  state.profileId = tokens.profile_id;
  state.roles = tokens.roles;
  if ('refresh_token' in tokens) localStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  localStorage.setItem(PROFILE_KEY, tokens.profile_id);
  notify();
}

function forget(): void {
  state.accessToken = null;
  state.expiresAt = 0;
  state.accountId = null;
  state.profileId = null;
  state.roles = [];
  localStorage.removeItem(REFRESH_KEY);
  localStorage.removeItem(PROFILE_KEY);
  notify();
}

async function send(method: string, path: string, body?: unknown, token?: string | null): Promise<Response> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['Authorization'] = `Bearer ${token}`;
  return fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body), credentials: 'same-origin' });
}

async function parse<T>(reply: Response): Promise<T> {
  const text = await reply.text();
  const data: unknown = text ? JSON.parse(text) : {};
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data as T;
}

/** New tokens from the stored refresh token; false (and signed out) when it is gone or refused. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const token = localStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    const profileId = localStorage.getItem(PROFILE_KEY);
    try {
      const reply = await send('POST', '/api/v1/auth/refresh', { refresh_token: token, profile_id: profileId });
      if (reply.status === 401 || reply.status === 404) {
        forget();
        return false;
      }
      adopt(await parse<Tokens>(reply));
      return true;
    } catch {
      return false; // the network: keep the refresh token for the next try
    } finally {
      refreshing = null;
    }
  })();
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
  adopt(await parse<Tokens>(await send('POST', '/api/v1/auth/signup', body)));
}

export async function signIn(email: string, password: string): Promise<void> {
  adopt(await parse<Tokens>(await send('POST', '/api/v1/auth/login', { email, password })));
}

export async function chooseProfile(profileId: string): Promise<void> {
  adopt(await api<AccessToken>('POST', '/api/v1/auth/token', { profile_id: profileId }));
}

export async function me(): Promise<Me> {
  return get<Me>('/api/v1/me');
}

export async function signOut(everywhere = false): Promise<void> {
  const token = localStorage.getItem(REFRESH_KEY);
  try {
    if (everywhere) await api('POST', '/api/v1/auth/logout-all');
    else await send('POST', '/api/v1/auth/logout', { refresh_token: token });
  } finally {
    forget();
  }
}

/** On start: a stored refresh token becomes a session (or is dropped). */
export async function restoreSession(): Promise<void> {
  if (hasRefreshToken()) await refresh();
}
