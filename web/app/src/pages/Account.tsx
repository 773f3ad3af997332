import { useState } from 'preact/hooks';
import { signIn, signUp } from '../api';
import { navigate } from '../router';

// Only an in-app path may follow a sign-in (never another origin).
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

function useSubmit(action: () => Promise<void>, next: string | null) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = (event: Event): void => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    action().then(
      () => navigate(`/profiles?next=${encodeURIComponent(safeNext(next))}`, true),
      (e: unknown) => {
        setError(e instanceof Error ? e.message : String(e));
        setBusy(false);
      },
    );
  };
  return { busy, error, submit };
}

export function SignIn({ next }: { next: string | null }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const { busy, error, submit } = useSubmit(() => signIn(email, password), next);
  return (
    <section class="form-page" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in</h1>
      <form onSubmit={submit}>
        <label>
          E-mail
          <input type="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error ? (
          <p role="alert" class="error">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p>
        New here? <a href={`/signup${next ? `?next=${encodeURIComponent(next)}` : ''}`}>Create an account</a>
      </p>
    </section>
  );
}

export function SignUp({ next }: { next: string | null }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [creator, setCreator] = useState(false);
  const { busy, error, submit } = useSubmit(() => signUp(email, password, name, creator ? 'creator' : 'viewer'), next);
  return (
    <section class="form-page" aria-labelledby="signup-title">
      <h1 id="signup-title">Create an account</h1>
      <form onSubmit={submit}>
        <label>
          Name
          <input type="text" autocomplete="nickname" maxLength={50} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          E-mail
          <input type="email" autocomplete="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input
            type="password"
            autocomplete="new-password"
            required
            minLength={8}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <label class="check">
          <input type="checkbox" checked={creator} onChange={(e) => setCreator(e.currentTarget.checked)} /> I want to upload videos
          (creator account)
        </label>
        {error ? (
          <p role="alert" class="error">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Sign up'}
        </button>
      </form>
      <p>
        Have an account? <a href={`/signin${next ? `?next=${encodeURIComponent(next)}` : ''}`}>Sign in</a>
      </p>
    </section>
  );
}
