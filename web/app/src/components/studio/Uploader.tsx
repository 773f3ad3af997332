// Uploads from the browser through tus 1.0 (api/tus.py) with tus-js-client, loaded only when the Studio uploads.
//
// Resuming: tus-js-client keeps each unfinished upload's URL in localStorage under a fingerprint of the file
// (here: the account, the file's name, type, size and modification time). Choosing the same file again, after
// a reload or in a new tab, finds that URL, asks the server (HEAD) how many bytes it stored and sends the rest.
// A dropped connection is retried with growing delays, then waits for the browser to be online again.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { DetailedError, PreviousUpload, Upload } from 'tus-js-client';
import { session } from '../../api';
import type { Privacy } from '../../types';
import { forceRefresh, freshToken, message, track, videoIdOf } from './tracked';

const ENDPOINT = '/api/v1/tus/uploads';
const CHUNK_SIZE = 8 * 1024 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000];

type Phase = 'idle' | 'starting' | 'uploading' | 'paused' | 'offline' | 'done' | 'error';

interface Details {
  title: string;
  description: string;
  tags: string;
  privacy: Privacy;
}

const EMPTY: Details = { title: '', description: '', tags: '', privacy: 'public' };

function fingerprintOf(file: File): string {
  return ['vidplat', session().accountId ?? '', file.name, file.type, file.size, file.lastModified].join('-');
}

function storagePrefix(): string {
  return `tus::vidplat-${session().accountId ?? ''}-`;
}

function detailsOf(metadata: Record<string, string> | undefined): Details {
  const privacy = metadata?.['privacy'];
  return {
    title: metadata?.['title'] ?? '',
    description: metadata?.['description'] ?? '',
    tags: metadata?.['tags'] ?? '',
    privacy: privacy === 'unlisted' || privacy === 'private' ? privacy : 'public',
  };
}

function size(bytes: number): string {
  if (bytes >= 1024 * 1024 * 1024) return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${bytes} B`;
}

async function storedBytes(uploadUrl: string): Promise<number | null> {
  try {
    const token = await freshToken();
    const headers: Record<string, string> = { 'Tus-Resumable': '1.0.0' };
    if (token) headers['Authorization'] = `Bearer ${token}`;
    const reply = await fetch(uploadUrl, { method: 'HEAD', headers, cache: 'no-store' });
    const offset = reply.ok ? Number(reply.headers.get('Upload-Offset')) : NaN;
    return Number.isFinite(offset) ? offset : null;
  } catch {
    return null;
  }
}

interface Unfinished {
  previous: PreviousUpload;
  stored: number | null;
}

/** The account's unfinished uploads that tus-js-client remembers in this browser. */
async function findUnfinished(): Promise<Unfinished[]> {
  const tus = await import('tus-js-client');
  const all = await tus.defaultOptions.urlStorage?.findAllUploads?.();
  const mine = (all ?? []).filter((p) => (p.urlStorageKey ?? '').startsWith(storagePrefix()) && p.uploadUrl);
  return Promise.all(mine.map(async (previous) => ({ previous, stored: await storedBytes(previous.uploadUrl ?? '') })));
}

export function Uploader({ onCreated, onFinished }: { onCreated: (videoId: string) => void; onFinished: (videoId: string) => void }) {
  const [details, setDetails] = useState<Details>(EMPTY);
  const [file, setFile] = useState<File | null>(null);
  const [resuming, setResuming] = useState<PreviousUpload | null>(null);
  const [phase, setPhase] = useState<Phase>('idle');
  const [sent, setSent] = useState(0);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [unfinished, setUnfinished] = useState<Unfinished[]>([]);
  const upload = useRef<Upload | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  const loadUnfinished = (): void => {
    findUnfinished().then(setUnfinished, () => setUnfinished([]));
  };
  useEffect(() => {
    loadUnfinished();
    // Offline while retrying gave up: go on as soon as the browser is back online.
    const online = (): void => {
      if (upload.current && phaseRef.current === 'offline') {
        setPhase('uploading');
        upload.current.start();
      }
    };
    window.addEventListener('online', online);
    return () => {
      window.removeEventListener('online', online);
      void upload.current?.abort(); // keeps what the server stored; the same file resumes from there
    };
  }, []);
  const phaseRef = useRef<Phase>('idle');
  phaseRef.current = phase;

  const choose = (chosen: File | null): void => {
    setFile(chosen);
    setResuming(null);
    setError(null);
    if (!chosen) return;
    const fingerprint = fingerprintOf(chosen);
    const match = unfinished.find((u) => (u.previous.urlStorageKey ?? '').startsWith(`tus::${fingerprint}::`));
    if (match) {
      // Asked again now: a connection cut by a reload may have been stored after the first answer.
      const url = match.previous.uploadUrl ?? '';
      void storedBytes(url).then((stored) =>
        setUnfinished((list) => list.map((u) => (u.previous.uploadUrl === url ? { ...u, stored } : u))),
      );
      setResuming(match.previous);
      setDetails(detailsOf(match.previous.metadata));
    } else if (!details.title) {
      setDetails({ ...details, title: chosen.name.replace(/\.[^.]+$/, '') });
    }
  };

  const start = async (event: Event): Promise<void> => {
    event.preventDefault();
    if (!file || phase === 'starting' || phase === 'uploading') return;
    setError(null);
    setPhase('starting');
    try {
      const tus = await import('tus-js-client');
      const metadata: Record<string, string> = { title: details.title.trim(), filename: file.name };
      if (details.description.trim()) metadata['description'] = details.description.trim();
      const tags = details.tags
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
      if (tags.length) metadata['tags'] = tags.join(',');
      metadata['privacy'] = details.privacy;
      if (file.type) metadata['filetype'] = file.type;
      const created = (): void => {
        const url = current.url;
        if (!url) return;
        const videoId = videoIdOf(url);
        track(videoId);
        onCreated(videoId);
      };
      const current: Upload = new tus.Upload(file, {
        endpoint: ENDPOINT,
        chunkSize: CHUNK_SIZE,
        retryDelays: RETRY_DELAYS,
        metadata,
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        fingerprint: (f: File) => Promise.resolve(fingerprintOf(f)),
        onBeforeRequest: async (req) => {
          const token = await freshToken();
          if (token) req.setHeader('Authorization', `Bearer ${token}`);
        },
        onShouldRetry: (err: DetailedError, attempt: number) => {
          const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
          if (status === 401) {
            forceRefresh();
            return attempt < 2;
          }
          // No answer (the network), a server error, or a PATCH that raced another: ask again.
          return status === 0 || status === 409 || status === 423 || status >= 500;
        },
        onUploadUrlAvailable: created,
        onProgress: (bytes: number, of: number) => {
          setSent(bytes);
          setTotal(of);
        },
        onSuccess: () => {
          setPhase('done');
          setResuming(null);
          setSent(file.size);
          setTotal(file.size);
          const url = current.url;
          if (url) onFinished(videoIdOf(url));
          upload.current = null;
          loadUnfinished();
        },
        onError: (err: Error) => {
          if (!navigator.onLine) {
            setPhase('offline');
            return;
          }
          setPhase('error');
          const status = (err as DetailedError).originalResponse?.getStatus();
          const body = (err as DetailedError).originalResponse?.getBody();
          setError(status ? `${describe(body) ?? `HTTP ${status}`}` : message(err));
        },
      });
      upload.current = current;
      const previous = await current.findPreviousUploads();
      const same = previous.find((p) => p.uploadUrl);
      if (same) current.resumeFromPreviousUpload(same);
      setSent(0);
      setTotal(file.size);
      setPhase('uploading');
      current.start();
    } catch (e) {
      setPhase('error');
      setError(message(e));
    }
  };

  const pause = (): void => {
    void upload.current?.abort();
    setPhase('paused');
  };
  const resume = (): void => {
    if (!upload.current) return;
    setError(null);
    setPhase('uploading');
    upload.current.start();
  };
  const cancel = async (): Promise<void> => {
    const current = upload.current;
    upload.current = null;
    try {
      await current?.abort(true); // termination: the server drops the bytes and fails the video
    } catch (e) {
      setError(message(e));
    }
    reset();
    loadUnfinished();
  };
  const discard = async (item: Unfinished): Promise<void> => {
    const tus = await import('tus-js-client');
    const url = item.previous.uploadUrl;
    try {
      if (url) {
        const token = await freshToken();
        await tus.Upload.terminate(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      }
    } catch {
      // Gone already (expired, finished elsewhere): forgetting it is all that is left to do.
    }
    if (item.previous.urlStorageKey) await tus.defaultOptions.urlStorage?.removeUpload?.(item.previous.urlStorageKey);
    loadUnfinished();
  };
  const reset = (): void => {
    setPhase('idle');
    setFile(null);
    setResuming(null);
    setDetails(EMPTY);
    setSent(0);
    setTotal(0);
    if (fileInput.current) fileInput.current.value = '';
  };

  const busy = phase === 'starting' || phase === 'uploading' || phase === 'paused' || phase === 'offline';
  const percent = total ? Math.floor((100 * sent) / total) : 0;
  const locked = busy || resuming !== null;
  return (
    <section class="studio-upload" aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a video</h2>
      {unfinished.length && !busy ? (
        <div class="unfinished">
          <p>Unfinished uploads in this browser: choose the same file again to go on from where it stopped.</p>
          <ul>
            {unfinished.map((item) => {
              const meta = item.previous.metadata ?? {};
              const whole = item.previous.size ?? 0;
              return (
                <li key={item.previous.urlStorageKey}>
                  <span class="unfinished-title">{meta['title'] || meta['filename'] || 'Untitled'}</span>{' '}
                  <span class="muted">
                    {meta['filename'] ?? ''}
                    {item.stored !== null && whole ? ` · ${size(item.stored)} of ${size(whole)} stored` : ''}
                  </span>{' '}
                  <button type="button" class="link" onClick={() => void discard(item)}>
                    Discard
                  </button>
                </li>
              );
            })}
          </ul>
        </div>
      ) : null}
      <form class="upload-form" onSubmit={(e) => void start(e)}>
        <label>
          Video file
          <input
            ref={fileInput}
            type="file"
            name="file"
            accept="video/*"
            required
            disabled={busy}
            onChange={(e) => choose(e.currentTarget.files?.[0] ?? null)}
          />
        </label>
        {resuming ? (
          <p class="note" role="status">
            This file was partly uploaded before: it goes on from the bytes already stored, with the details given then.
          </p>
        ) : null}
        <label>
          Title
          <input
            type="text"
            name="title"
            required
            maxLength={200}
            readOnly={locked}
            value={details.title}
            onInput={(e) => setDetails({ ...details, title: e.currentTarget.value })}
          />
        </label>
        <label>
          Description
          <textarea
            name="description"
            rows={3}
            maxLength={5000}
            readOnly={locked}
            value={details.description}
            onInput={(e) => setDetails({ ...details, description: e.currentTarget.value })}
          />
        </label>
        <label>
          Tags (comma-separated)
          <input
            type="text"
            name="tags"
            readOnly={locked}
            value={details.tags}
            onInput={(e) => setDetails({ ...details, tags: e.currentTarget.value })}
          />
        </label>
        <label>
          Privacy
          <select
            name="privacy"
            disabled={locked}
            value={details.privacy}
            onChange={(e) => setDetails({ ...details, privacy: e.currentTarget.value as Privacy })}
          >
            <option value="public">Public</option>
            <option value="unlisted">Unlisted</option>
            <option value="private">Private</option>
          </select>
        </label>
        <div class="row-left">
          {phase === 'idle' || (phase === 'error' && !upload.current) ? (
            <button type="submit" disabled={!file}>
              {resuming ? 'Resume upload' : 'Upload'}
            </button>
          ) : null}
          {phase === 'uploading' ? (
            <button type="button" onClick={pause}>
              Pause
            </button>
          ) : null}
          {phase === 'paused' || phase === 'offline' || (phase === 'error' && upload.current) ? (
            <button type="button" onClick={resume}>
              Resume
            </button>
          ) : null}
          {busy || (phase === 'error' && upload.current) ? (
            <button type="button" onClick={() => void cancel()}>
              Cancel upload
            </button>
          ) : null}
          {phase === 'done' ? (
            <button type="button" onClick={reset}>
              Upload another
            </button>
          ) : null}
        </div>
      </form>
      {phase !== 'idle' ? (
        <div class="upload-progress">
          <label for="upload-progress">
            {phase === 'done'
              ? 'Uploaded'
              : phase === 'paused'
                ? 'Paused'
                : phase === 'offline'
                  ? 'Connection lost: waiting to go on'
                  : phase === 'error'
                    ? 'Stopped'
                    : 'Uploading'}
          </label>
          <progress id="upload-progress" max={100} value={percent} data-phase={phase} />
          <span class="muted" role="status">
            {percent}% · {size(sent)} of {size(total)}
          </span>
        </div>
      ) : null}
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
    </section>
  );
}

function describe(body: string | undefined): string | null {
  if (!body) return null;
  try {
    const data = JSON.parse(body) as Record<string, unknown>;
    const text = data['error'] ?? data['title'] ?? data['message'];
    const detail = data['detail'];
    if (typeof text !== 'string') return null;
    return detail && typeof detail === 'object' ? `${text}: ${JSON.stringify(detail)}` : text;
  } catch {
    return null;
  }
}
