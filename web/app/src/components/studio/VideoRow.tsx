// One of the creator's videos in the Studio: its timeline, an edit form, the QoE numbers and a delete that
// asks first (a modal <dialog>: focus stays in it, Escape cancels).

import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../../api';
import { ago, duration } from '../../format';
import type { Privacy, Status, Video, VideoItem } from '../../types';
import { Qoe } from './Qoe';
import { Timeline } from './Timeline';
import { message } from './tracked';

export type StudioVideo = VideoItem & { status_reason?: string | null };

function Editor({ video, onSaved, onClose }: { video: StudioVideo; onSaved: (v: Video) => void; onClose: () => void }) {
  const [title, setTitle] = useState(video.title ?? '');
  const [description, setDescription] = useState(video.description ?? '');
  const [tags, setTags] = useState((video.tags ?? []).join(', '));
  const [privacy, setPrivacy] = useState<Privacy>(video.privacy);
  const [thumbnail, setThumbnail] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const id = video.video_id;
  const save = (event: Event): void => {
    event.preventDefault();
    const body: Record<string, unknown> = {
      title: title.trim(),
      description: description.trim() ? description : null,
      tags: tags
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
      privacy,
    };
    if (thumbnail.trim()) body['thumbnail_time'] = Number(thumbnail);
    setBusy(true);
    setError(null);
    api<Video>('PATCH', `/api/v1/videos/${encodeURIComponent(id)}`, body).then(
      (saved) => {
        setBusy(false);
        onSaved(saved);
      },
      (e: unknown) => {
        setBusy(false);
        setError(message(e));
      },
    );
  };
  return (
    <form class="edit-form" onSubmit={save} aria-label={`Edit ${video.title || 'Untitled'}`}>
      <label>
        Title
        <input type="text" name="title" required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label>
        Description
        <textarea name="description" rows={3} maxLength={5000} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      </label>
      <label>
        Tags (comma-separated)
        <input type="text" name="tags" value={tags} onInput={(e) => setTags(e.currentTarget.value)} />
      </label>
      <label>
        Privacy
        <select name="privacy" value={privacy} onChange={(e) => setPrivacy(e.currentTarget.value as Privacy)}>
          <option value="public">Public</option>
          <option value="unlisted">Unlisted</option>
          <option value="private">Private</option>
        </select>
      </label>
      <label>
        Thumbnail time (seconds)
        <input
          type="number"
          name="thumbnail_time"
          min={0}
          max={video.duration_s ?? undefined}
          step="0.1"
          placeholder="unchanged"
          value={thumbnail}
          onInput={(e) => setThumbnail(e.currentTarget.value)}
        />
      </label>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      <div class="row-left">
        <button type="submit" disabled={busy}>
          {busy ? 'Saving…' : 'Save'}
        </button>
        <button type="button" onClick={onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function ConfirmDelete({ video, onDeleted, onClose }: { video: StudioVideo; onDeleted: () => void; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const confirm = (): void => {
    setBusy(true);
    setError(null);
    api('DELETE', `/api/v1/videos/${encodeURIComponent(video.video_id)}`).then(
      () => {
        dialog.current?.close();
        onDeleted();
      },
      (e: unknown) => {
        setBusy(false);
        setError(message(e));
      },
    );
  };
  const titleId = `delete-title-${video.video_id}`;
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby={titleId} onClose={onClose}>
      <h2 id={titleId}>Delete “{video.title || 'Untitled'}”?</h2>
      <p>The video, its renditions and its original are removed for good. This cannot be undone.</p>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      <div class="row-left">
        <button type="button" autofocus onClick={() => dialog.current?.close()}>
          Keep it
        </button>
        <button type="button" class="danger" disabled={busy} onClick={confirm}>
          {busy ? 'Deleting…' : 'Delete'}
        </button>
      </div>
    </dialog>
  );
}

export function VideoRow({
  video,
  onUpdate,
  onDeleted,
}: {
  video: StudioVideo;
  onUpdate: (video: StudioVideo) => void;
  onDeleted: (videoId: string) => void;
}) {
  const [panel, setPanel] = useState<'none' | 'edit' | 'stats'>('none');
  const [deleting, setDeleting] = useState(false);
  const title = video.title || 'Untitled';
  const watchable = video.status === 'ready' || video.status === 'playable';
  const onStatus = (status: Status, reason: string | null): void => {
    if (status !== video.status || reason !== (video.status_reason ?? null)) onUpdate({ ...video, status, status_reason: reason });
  };
  const panelId = `panel-${video.video_id}`;
  return (
    <li class="studio-video" data-video-id={video.video_id}>
      <div class="studio-video-head">
        <h3 class="studio-video-title">{watchable ? <a href={`/watch/${encodeURIComponent(video.video_id)}`}>{title}</a> : title}</h3>
        <span class="muted">
          {[video.privacy, duration(video.duration_s), ago(video.created_at)].filter(Boolean).join(' · ')}
        </span>
      </div>
      <Timeline videoId={video.video_id} status={video.status} onChange={onStatus} />
      <div class="row-left" role="group" aria-label={`Manage ${title}`}>
        <button
          type="button"
          aria-expanded={panel === 'edit'}
          aria-controls={panelId}
          onClick={() => setPanel(panel === 'edit' ? 'none' : 'edit')}
        >
          Edit
        </button>
        <button
          type="button"
          aria-expanded={panel === 'stats'}
          aria-controls={panelId}
          disabled={!watchable}
          onClick={() => setPanel(panel === 'stats' ? 'none' : 'stats')}
        >
          Stats
        </button>
        <button type="button" class="danger" onClick={() => setDeleting(true)}>
          Delete
        </button>
      </div>
      <div id={panelId}>
        {panel === 'edit' ? (
          <Editor
            video={video}
            onSaved={(saved) => {
              onUpdate({ ...video, ...saved });
              setPanel('none');
            }}
            onClose={() => setPanel('none')}
          />
        ) : panel === 'stats' ? (
          <Qoe videoId={video.video_id} />
        ) : null}
      </div>
      {deleting ? <ConfirmDelete video={video} onDeleted={() => onDeleted(video.video_id)} onClose={() => setDeleting(false)} /> : null}
    </li>
  );
}
