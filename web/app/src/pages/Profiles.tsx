import { useEffect, useState } from 'preact/hooks';
import { api, chooseProfile, me, session, signOut } from '../api';
import { navigate } from '../router';
import type { Me, Profile } from '../types';

const MAX_PROFILES = 5;

export function Profiles({ next }: { next: string | null }) {
  const [account, setAccount] = useState<Me | null>(null);
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
  const fail = (e: unknown): void => setError(e instanceof Error ? e.message : String(e));

  const load = (): void => {
    me().then(setAccount, fail);
  };
  useEffect(() => {
    if (!session().accessToken) navigate(`/signin?next=${encodeURIComponent('/profiles')}`, true);
    else load();
  }, []);

  const pick = (profile: Profile): void => {
    chooseProfile(profile.profile_id).then(() => navigate(target), fail);
  };

  if (!account) return error ? <p role="alert" class="error">{error}</p> : <p class="muted">Loading…</p>;
  return (
    <section class="profiles" aria-labelledby="profiles-title">
      <h1 id="profiles-title">Who is watching?</h1>
      <ul class="profile-list">
        {account.profiles.map((profile) => (
          <li key={profile.profile_id}>
            <button
              type="button"
              class={profile.profile_id === account.profile_id ? 'profile current' : 'profile'}
              aria-current={profile.profile_id === account.profile_id ? 'true' : undefined}
              onClick={() => pick(profile)}
            >
              <span class="avatar" aria-hidden="true">
                {(profile.name || '?').slice(0, 1).toUpperCase()}
              </span>
              <span>{profile.name}</span>
            </button>
          </li>
        ))}
      </ul>
      {account.profiles.length < MAX_PROFILES ? (
        <form
          class="inline-form"
          onSubmit={(event) => {
            event.preventDefault();
            if (!name.trim()) return;
            api('POST', '/api/v1/profiles', { name: name.trim() }).then(() => {
              setName('');
              load();
            }, fail);
          }}
        >
          <label>
            New profile{' '}
            <input type="text" maxLength={50} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <button type="submit">Add</button>
        </form>
      ) : null}
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      <p class="muted">Signed in as {account.email}</p>
      <div class="row">
        <button type="button" onClick={() => void signOut().then(() => navigate('/'))}>
          Sign out
        </button>
        <button type="button" onClick={() => void signOut(true).then(() => navigate('/'))}>
          Sign out everywhere
        </button>
      </div>
    </section>
  );
}
