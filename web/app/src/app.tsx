import { useEffect, useRef, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { onSessionChange, session, signOut } from './api';
import { match, navigate, useLocation } from './router';
import { Home } from './pages/Home';
import { Search } from './pages/Search';
import { Watch } from './pages/Watch';
import { SignIn, SignUp } from './pages/Account';
import { Profiles } from './pages/Profiles';
import { Dashboard } from './pages/Dashboard';
import { Studio } from './pages/Studio';
import { NotFound } from './components/NotFound';

interface Page {
  title: string;
  body: ComponentChildren;
}

function route(path: string, params: URLSearchParams): Page {
  if (match('/', path)) return { title: 'Home', body: <Home /> };
  if (match('/search', path)) return { title: `Search: ${params.get('q') ?? ''}`, body: <Search params={params} /> };
  const watch = match('/watch/:id', path);
  if (watch) return { title: 'Watch', body: <Watch key={watch['id']} videoId={watch['id'] ?? ''} params={params} /> };
  if (match('/signin', path)) return { title: 'Sign in', body: <SignIn next={params.get('next')} /> };
  if (match('/signup', path)) return { title: 'Sign up', body: <SignUp next={params.get('next')} /> };
  if (match('/profiles', path)) return { title: 'Profiles', body: <Profiles next={params.get('next')} /> };
  if (match('/dashboard', path)) return { title: 'QoE dashboard', body: <Dashboard /> };
  if (match('/studio', path)) return { title: 'Studio', body: <Studio /> };
  return { title: 'Not found', body: <NotFound /> };
}

function useSession() {
  const [, setTick] = useState(0);
  useEffect(() => onSessionChange(() => setTick((n) => n + 1)), []);
  return session();
}

function SearchBox() {
  const { path, params } = useLocation();
  const [q, setQ] = useState(path === '/search' ? (params.get('q') ?? '') : '');
  useEffect(() => {
    if (path === '/search') setQ(params.get('q') ?? '');
  }, [path, params.get('q')]);
  return (
    <form
      role="search"
      class="searchbox"
      onSubmit={(event) => {
        event.preventDefault();
        if (q.trim()) navigate(`/search?q=${encodeURIComponent(q.trim())}`);
      }}
    >
      <label for="q" class="visually-hidden">
        Search videos
      </label>
      <input id="q" name="q" type="search" placeholder="Search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      <button type="submit">Search</button>
    </form>
  );
}

function Header() {
  const current = useSession();
  return (
    <header class="topbar">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <a class="brand" href="/" aria-label="vidplat home">
        vidplat
      </a>
      <SearchBox />
      <nav aria-label="Account" class="account">
        {current.accessToken ? (
          <>
            {current.roles.includes('creator') || current.roles.includes('admin') ? <a href="/studio">Studio</a> : null}
            {current.roles.includes('admin') ? <a href="/dashboard">Dashboard</a> : null}
            <a href="/profiles">Profiles</a>
            <button
              type="button"
              onClick={() => {
                void signOut().then(() => navigate('/'));
              }}
            >
              Sign out
            </button>
          </>
        ) : (
          <>
            <a href="/signin">Sign in</a>
            <a href="/signup" class="button">
              Sign up
            </a>
          </>
        )}
      </nav>
    </header>
  );
}

export function App() {
  const { path, params } = useLocation();
  const page = route(path, params);
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  useEffect(() => {
    document.title = `${page.title} · vidplat`;
    // After a client-side navigation, focus moves to the new page (as a page load would), for keyboards and
    // screen readers; the first render keeps the browser's own focus.
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [path, params.toString()]);
  return (
    <>
      <Header />
      <main id="main" ref={main} tabIndex={-1}>
        {page.body}
      </main>
    </>
  );
}
