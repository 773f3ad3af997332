// Comments with one level of replies: post, page on, remove one's own. Writes are events (202 once on Kafka),
// applied by a worker a moment later, so the page shows what it posted or removed at once.

import { useEffect, useState } from 'preact/hooks';
import { api, get, query, session } from '../api';
import { ago } from '../format';
import type { Comment, CommentPage, ReplyPage } from '../types';

const PAGE = 20;

function base(videoId: string): string {
  return `/api/v1/videos/${encodeURIComponent(videoId)}/comments`;
}

function Composer({ label, onPost }: { label: string; onPost: (body: string) => Promise<void> }) {
  const [body, setBody] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [id] = useState(() => `c-${label.replace(/\W+/g, '-')}-${Math.random().toString(36).slice(2, 8)}`);
  return (
    <form
      class="composer"
      onSubmit={(event) => {
        event.preventDefault();
        if (!body.trim() || busy) return;
        setBusy(true);
        setError(null);
        onPost(body).then(
          () => {
            setBody('');
            setBusy(false);
          },
          (e: unknown) => {
            setError(e instanceof Error ? e.message : String(e));
            setBusy(false);
          },
        );
      }}
    >
      <label for={id} class="visually-hidden">
        {label}
      </label>
      <textarea id={id} rows={2} maxLength={5000} placeholder={label} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
      <button type="submit" disabled={busy || !body.trim()}>
        {busy ? 'Posting…' : 'Post'}
      </button>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
    </form>
  );
}

function CommentView({ comment, onRemove }: { comment: Comment; onRemove: (c: Comment) => void }) {
  return (
    <div class="comment-body">
      <p class="comment-meta">
        <span class="author">{comment.mine ? 'You' : `Viewer ${(comment.author_id ?? '').slice(0, 8)}`}</span>{' '}
        <span class="muted">{ago(comment.posted_at)}</span>
      </p>
      {/* Rendered as text: a comment's markup shows as the characters it is made of. */}
      <p class="comment-text">{comment.body}</p>
      {comment.mine ? (
        <button type="button" class="link" onClick={() => onRemove(comment)}>
          Remove
        </button>
      ) : null}
    </div>
  );
}

function Thread({ videoId, comment, onRemove }: { videoId: string; comment: Comment; onRemove: (c: Comment) => void }) {
  const [open, setOpen] = useState(false);
  const [replies, setReplies] = useState<Comment[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const signedIn = session().accessToken !== null;
  const path = `${base(videoId)}/${encodeURIComponent(comment.comment_id)}/replies`;

  const more = async (from: string | null): Promise<void> => {
    const page = await get<ReplyPage>(path + query({ limit: PAGE, cursor: from }));
    setReplies((r) => (from ? [...r, ...page.replies] : page.replies));
    setCursor(page.next_cursor);
    setLoaded(true);
  };
  const removeReply = (reply: Comment): void => {
    void api('DELETE', `${base(videoId)}/${encodeURIComponent(reply.comment_id)}`).then(() =>
      setReplies((r) => r.filter((x) => x.comment_id !== reply.comment_id)),
    );
  };
  const count = Math.max(comment.reply_count ?? 0, replies.length);
  return (
    <li class="comment">
      <CommentView comment={comment} onRemove={onRemove} />
      <button
        type="button"
        class="link"
        aria-expanded={open}
        onClick={() => {
          setOpen(!open);
          if (!open && !loaded) void more(null);
        }}
      >
        {open ? 'Hide replies' : count ? `${count} ${count === 1 ? 'reply' : 'replies'}` : 'Reply'}
      </button>
      {open ? (
        <div class="replies">
          <ul>
            {replies.map((reply) => (
              <li key={reply.comment_id} class="comment reply">
                <CommentView comment={reply} onRemove={removeReply} />
              </li>
            ))}
          </ul>
          {cursor ? (
            <button type="button" class="link" onClick={() => void more(cursor)}>
              More replies
            </button>
          ) : null}
          {signedIn ? (
            <Composer
              label="Write a reply"
              onPost={async (body) => {
                const posted = await api<{ comment_id: string }>('POST', path, { body });
                const reply: Comment = {
                  comment_id: posted.comment_id,
                  video_id: videoId,
                  parent_id: comment.comment_id,
                  author_id: session().profileId,
                  body,
                  posted_at: new Date().toISOString(),
                  reply_count: null,
                  mine: true,
                };
                setReplies((r) => [...r, reply]);
              }}
            />
          ) : null}
        </div>
      ) : null}
    </li>
  );
}

export function Comments({ videoId }: { videoId: string }) {
  const [sort, setSort] = useState<'newest' | 'top'>('newest');
  const [comments, setComments] = useState<Comment[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const signedIn = session().accessToken !== null;

  const load = async (from: string | null): Promise<void> => {
    try {
      const page = await get<CommentPage>(base(videoId) + query({ sort, limit: PAGE, cursor: from }));
      setComments((c) => (from && c ? [...c, ...page.comments] : page.comments));
      setCursor(page.next_cursor);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  useEffect(() => {
    setComments(null);
    void load(null);
  }, [videoId, sort]);

  const remove = (comment: Comment): void => {
    if (!confirm('Remove this comment and its replies?')) return;
    void api('DELETE', `${base(videoId)}/${encodeURIComponent(comment.comment_id)}`).then(
      () => setComments((c) => (c ?? []).filter((x) => x.comment_id !== comment.comment_id)),
      (e: unknown) => setError(e instanceof Error ? e.message : String(e)),
    );
  };

  return (
    <section class="comments" aria-labelledby="comments-title">
      <div class="comments-head">
        <h2 id="comments-title">Comments</h2>
        <label>
          Sort{' '}
          <select value={sort} onChange={(e) => setSort(e.currentTarget.value === 'top' ? 'top' : 'newest')}>
            <option value="newest">Newest</option>
            <option value="top">Top</option>
          </select>
        </label>
      </div>
      {signedIn ? (
        <Composer
          label="Add a comment"
          onPost={async (body) => {
            const posted = await api<{ comment_id: string }>('POST', base(videoId), { body });
            const comment: Comment = {
              comment_id: posted.comment_id,
              video_id: videoId,
              parent_id: null,
              author_id: session().profileId,
              body,
              posted_at: new Date().toISOString(),
              reply_count: 0,
              mine: true,
            };
            setComments((c) => [comment, ...(c ?? [])]);
          }}
        />
      ) : (
        <p class="muted">
          <a href={`/signin?next=${encodeURIComponent(location.pathname)}`}>Sign in</a> to comment.
        </p>
      )}
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {comments === null ? <p class="muted">Loading comments…</p> : null}
      <ul class="comment-list">
        {(comments ?? []).map((c) => (
          <Thread key={c.comment_id} videoId={videoId} comment={c} onRemove={remove} />
        ))}
      </ul>
      {cursor ? (
        <button type="button" onClick={() => void load(cursor)}>
          More comments
        </button>
      ) : null}
    </section>
  );
}
