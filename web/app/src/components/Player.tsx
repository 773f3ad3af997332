// The watch page's player: hls.js on a <video>, with its own controls (play, seek, time, volume, quality with
// Auto, speed, fullscreen) and keyboard shortcuts; the telemetry SDK watches it, and the position is saved.
//
// Shortcuts (when focus is not in a text field): k or space play/pause, j / l back / forward 10 s, ← / → 5 s,
// m mute, f fullscreen, < / > slower / faster, 0-9 jump to that tenth of the video.

import Hls, { type Level } from 'hls.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { accessToken } from '../api';
import { duration as clock } from '../format';
import { deviceClass, startTelemetry, type Telemetry } from '../telemetry';

const SPEEDS = [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2];

export interface PlayerProps {
  videoId: string;
  src: string;
  poster?: string | null | undefined;
  startAt?: number;
  autoplay?: boolean;
  onProgress?: (positionS: number, sessionId: string) => void;
}

interface QualityOption {
  index: number; // hls.js level index; -1 is Auto
  label: string;
}

function levelLabel(level: Level): string {
  const height = level.height ? `${level.height}p` : '';
  const rate = level.frameRate && level.frameRate > 30 ? String(Math.round(level.frameRate)) : '';
  return height ? `${height}${rate}` : `${Math.round(level.bitrate / 1000)} kb/s`;
}

export function Player({ videoId, src, poster, startAt = 0, autoplay = true, onProgress }: PlayerProps) {
  const box = useRef<HTMLDivElement>(null);
  const videoRef = useRef<HTMLVideoElement>(null);
  const hlsRef = useRef<Hls | null>(null);
  const telemetryRef = useRef<Telemetry | null>(null);
  const sessionId = useRef(crypto.randomUUID());
  const onProgressRef = useRef(onProgress);
  onProgressRef.current = onProgress;

  const [paused, setPaused] = useState(true);
  const [time, setTime] = useState(0);
  const [length, setLength] = useState(0);
  const [muted, setMuted] = useState(false);
  const [volume, setVolume] = useState(1);
  const [speed, setSpeed] = useState(1);
  const [qualities, setQualities] = useState<QualityOption[]>([]);
  const [quality, setQuality] = useState(-1);
  const [playingLevel, setPlayingLevel] = useState<string>('');
  const [error, setError] = useState<string | null>(null);
  const [firstFrame, setFirstFrame] = useState(false);
  const [announce, setAnnounce] = useState('');

  useEffect(() => {
    const video = videoRef.current;
    if (!video) return;
    setError(null);
    let hls: Hls | null = null;
    const sid = sessionId.current;
    const play = (): void => {
      telemetryRef.current?.playRequested();
      video.play().catch(() => setPaused(true)); // autoplay refused: the viewer presses play
    };
    if (Hls.isSupported()) {
      hls = new Hls({
        startPosition: startAt > 0 ? startAt : -1,
        // CMCD joins the segment requests to this view's telemetry session (api/cmcd.py harvests it).
        cmcd: { sessionId: sid, contentId: videoId, useHeaders: false },
      });
      hlsRef.current = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
        const options = data.levels
          .map((level, index) => ({ index, label: levelLabel(level), height: level.height || 0 }))
          .sort((a, b) => b.height - a.height);
        setQualities(options);
        if (autoplay) play();
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
        const level = hls?.levels[data.level];
        setPlayingLevel(level ? levelLabel(level) : '');
      });
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
          setError('The network failed; retrying…');
          hls?.startLoad();
        } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
          hls?.recoverMediaError();
        } else {
          setError(`This video cannot play (${data.details}).`);
        }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = src; // Safari plays HLS natively
      if (startAt > 0) video.currentTime = startAt;
      if (autoplay) video.addEventListener('loadedmetadata', play, { once: true });
    } else {
      setError('This browser cannot play HLS video.');
    }
    telemetryRef.current = startTelemetry({
      endpoint: '/api/v1/telemetry',
      video,
      videoId,
      sessionId: sid,
      deviceClass: deviceClass(),
      hls,
      accessToken,
    });
    return () => {
      telemetryRef.current?.end();
      telemetryRef.current?.stop();
      telemetryRef.current = null;
      if (video.currentTime > 0) onProgressRef.current?.(video.currentTime, sid);
      hls?.destroy();
      hlsRef.current = null;
    };
  }, [src, videoId]);

  // The position is saved every 10 s of playback, on pause and when the page is hidden.
  useEffect(() => {
    const video = videoRef.current;
    if (!video) return;
    let last = 0;
    const save = (): void => {
      if (video.currentTime > 0) onProgressRef.current?.(video.currentTime, sessionId.current);
    };
    const tick = (): void => {
      setTime(video.currentTime);
      if (Date.now() - last > 10_000 && !video.paused) {
        last = Date.now();
        save();
      }
    };
    const hidden = (): void => {
      if (document.visibilityState === 'hidden') save();
    };
    const events: [string, () => void][] = [
      ['timeupdate', tick],
      ['play', () => setPaused(false)],
      ['pause', () => (setPaused(true), save())],
      ['ended', () => (setPaused(true), save())],
      ['durationchange', () => setLength(Number.isFinite(video.duration) ? video.duration : 0)],
      ['volumechange', () => (setMuted(video.muted), setVolume(video.volume))],
      ['ratechange', () => setSpeed(video.playbackRate)],
    ];
    for (const [name, fn] of events) video.addEventListener(name, fn);
    document.addEventListener('visibilitychange', hidden);
    const onFrame = (): void => setFirstFrame(true);
    if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(onFrame);
    else video.addEventListener('playing', onFrame, { once: true });
    return () => {
      for (const [name, fn] of events) video.removeEventListener(name, fn);
      document.removeEventListener('visibilitychange', hidden);
    };
  }, [src]);

  const video = (): HTMLVideoElement | null => videoRef.current;
  const toggle = (): void => {
    const v = video();
    if (!v) return;
    if (v.paused) {
      telemetryRef.current?.playRequested();
      void v.play().catch(() => setPaused(true));
    } else v.pause();
  };
  const seekBy = (delta: number): void => {
    const v = video();
    if (v) v.currentTime = Math.max(0, Math.min(v.duration || 0, v.currentTime + delta));
  };
  const setRate = (rate: number): void => {
    const v = video();
    if (v) v.playbackRate = rate;
    setAnnounce(`Speed ${rate}×`);
  };
  const chooseQuality = (index: number): void => {
    const hls = hlsRef.current;
    if (hls) hls.currentLevel = index; // -1: Auto (ABR)
    setQuality(index);
  };
  const fullscreen = (): void => {
    if (document.fullscreenElement) void document.exitFullscreen();
    else void box.current?.requestFullscreen();
  };

  useEffect(() => {
    const onKey = (event: KeyboardEvent): void => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target as HTMLElement | null;
      if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
        const range = target instanceof HTMLInputElement && target.type === 'range';
        if (!range) return;
      }
      const v = video();
      if (!v) return;
      const key = event.key;
      if (key === ' ' && target instanceof HTMLButtonElement) return; // space presses the focused button
      let handled = true;
      if (key === 'k' || key === ' ') toggle();
      else if (key === 'j') seekBy(-10);
      else if (key === 'l') seekBy(10);
      else if (key === 'ArrowLeft' && !(target instanceof HTMLInputElement)) seekBy(-5);
      else if (key === 'ArrowRight' && !(target instanceof HTMLInputElement)) seekBy(5);
      else if (key === 'm') v.muted = !v.muted;
      else if (key === 'f') fullscreen();
      else if (key === '>' || key === '<') {
        const i = SPEEDS.indexOf(v.playbackRate);
        const next = SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, (i < 0 ? 3 : i) + (key === '>' ? 1 : -1)))] ?? 1;
        setRate(next);
      } else if (/^[0-9]$/.test(key) && v.duration) v.currentTime = (v.duration * Number(key)) / 10;
      else handled = false;
      if (handled) event.preventDefault();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  return (
    <div class="player" ref={box} data-first-frame={firstFrame ? 'yes' : 'no'}>
      <video
        ref={videoRef}
        poster={poster ?? undefined}
        playsInline
        onClick={toggle}
        aria-label="Video"
        data-session-id={sessionId.current}
      />
      {error ? (
        <p class="player-error" role="alert">
          {error}
        </p>
      ) : null}
      <div class="controls">
        <button type="button" onClick={toggle} aria-label={paused ? 'Play (k)' : 'Pause (k)'}>
          {paused ? '▶' : '❚❚'}
        </button>
        <input
          class="seek"
          type="range"
          min={0}
          max={length || 0}
          step={0.1}
          value={time}
          aria-label="Seek"
          aria-valuetext={`${clock(time)} of ${clock(length)}`}
          onInput={(e) => {
            const v = video();
            if (v) v.currentTime = Number(e.currentTarget.value);
          }}
        />
        <span class="time">
          {clock(time)} / {clock(length)}
        </span>
        <button
          type="button"
          onClick={() => {
            const v = video();
            if (v) v.muted = !v.muted;
          }}
          aria-label={muted ? 'Unmute (m)' : 'Mute (m)'}>
          {muted || volume === 0 ? '🔇' : '🔊'}
        </button>
        <input
          class="volume"
          type="range"
          min={0}
          max={1}
          step={0.05}
          value={muted ? 0 : volume}
          aria-label="Volume"
          onInput={(e) => {
            const v = video();
            if (v) {
              v.volume = Number(e.currentTarget.value);
              v.muted = v.volume === 0;
            }
          }}
        />
        <label class="menu">
          <span class="visually-hidden">Quality</span>
          <select value={quality} onChange={(e) => chooseQuality(Number(e.currentTarget.value))} aria-label="Quality">
            <option value={-1}>Auto{quality === -1 && playingLevel ? ` (${playingLevel})` : ''}</option>
            {qualities.map((q) => (
              <option key={q.index} value={q.index}>
                {q.label}
              </option>
            ))}
          </select>
        </label>
        <label class="menu">
          <span class="visually-hidden">Playback speed</span>
          <select value={speed} onChange={(e) => setRate(Number(e.currentTarget.value))} aria-label="Playback speed">
            {SPEEDS.map((s) => (
              <option key={s} value={s}>
                {s === 1 ? 'Normal' : `${s}×`}
              </option>
            ))}
          </select>
        </label>
        <button type="button" onClick={fullscreen} aria-label="Fullscreen (f)">
          ⛶
        </button>
      </div>
      <p class="visually-hidden" aria-live="polite">
        {announce}
      </p>
    </div>
  );
}
