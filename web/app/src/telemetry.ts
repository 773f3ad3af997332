// The telemetry SDK as a typed module of the app. The beacons are those of web/sdk/vidplat-telemetry.js, the
// one implementation (still loadable alone by any other player as a classic script): importing it defines
// window.VidplatTelemetry, and this module gives it types.

import Hls from 'hls.js';
import '../../sdk/vidplat-telemetry.js';

export interface TelemetryOptions {
  endpoint: string;
  video: HTMLVideoElement;
  videoId: string;
  sessionId: string;
  deviceClass?: 'desktop' | 'mobile' | 'tablet' | 'tv' | null;
  hls?: Hls | null;
  accessToken?: string | (() => string | null) | null;
  flushIntervalMs?: number;
  maxQueuedEvents?: number;
  heartbeatMs?: number;
}

export interface TelemetryStats {
  queued: number;
  seq: number;
  sent: number;
  retried: number;
  dropped: number;
  batches: number;
}

export interface Telemetry {
  /** Call right before video.play(): startup time runs from here to the first frame. */
  playRequested(): void;
  /** The view is over (called on `ended`; call it when the viewer leaves). */
  end(): void;
  flush(): void;
  pending(): number;
  stats(): TelemetryStats;
  stop(): void;
}

interface VidplatTelemetryGlobal {
  start(options: TelemetryOptions): Telemetry;
  renditionOfLevel(level: unknown): string | null;
}

declare global {
  interface Window {
    VidplatTelemetry?: VidplatTelemetryGlobal;
    Hls?: typeof Hls;
  }
}

export function deviceClass(): 'desktop' | 'mobile' | 'tablet' {
  const ua = navigator.userAgent;
  if (/iPad|Tablet/i.test(ua)) return 'tablet';
  if (/Mobi|Android|iPhone/i.test(ua)) return 'mobile';
  return 'desktop';
}

export function startTelemetry(options: TelemetryOptions): Telemetry {
  const sdk = window.VidplatTelemetry;
  if (!sdk) throw new Error('the telemetry SDK did not load');
  // The SDK reads hls.js's event names from the global a classic <script> of hls.js defines; the app bundles
  // hls.js as a module, so it names the same class there.
  if (options.hls && !window.Hls) window.Hls = Hls;
  return sdk.start(options);
}
