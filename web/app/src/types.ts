// The API's shapes, as api/openapi.yaml documents them (only the fields the app reads).

export type Role = 'viewer' | 'creator' | 'admin';
export type Privacy = 'public' | 'unlisted' | 'private';
export type Status = 'uploading' | 'processing' | 'playable' | 'ready' | 'failed' | 'deleted';

export interface PlaybackUrls {
  hls: string;
  dash: string;
  progressive?: string | null;
  poster?: string | null;
  storyboard?: string | null;
}

export interface VideoItem {
  video_id: string;
  owner_id?: string | null;
  title: string | null;
  description?: string | null;
  tags?: string[];
  privacy: Privacy;
  status: Status;
  duration_s?: number | null;
  width?: number | null;
  height?: number | null;
  created_at?: string | null;
  urls?: PlaybackUrls | null;
  views?: number;
  score?: number;
  source?: string;
}

export interface Rendition {
  name: string;
  kind?: string | null;
  codec?: string | null;
  width?: number | null;
  height?: number | null;
  bandwidth?: number | null;
  complete?: boolean;
}

export interface Video extends VideoItem {
  status_reason?: string | null;
  renditions: Rendition[];
  playback_token?: { token: string; expires_at: string } | null;
}

export interface Tokens {
  access_token: string;
  expires_in: number;
  refresh_token: string;
  account_id: string;
  profile_id: string;
  roles: Role[];
}

export interface AccessToken {
  access_token: string;
  expires_in: number;
  account_id: string;
  profile_id: string;
  roles: Role[];
}

export interface Profile {
  profile_id: string;
  name: string;
  default: boolean;
}

export interface Me {
  account_id: string;
  email: string;
  display_name?: string | null;
  roles: Role[];
  profile_id: string | null;
  profiles: Profile[];
}

export interface Comment {
  comment_id: string;
  video_id: string;
  parent_id: string | null;
  author_id: string | null;
  body: string;
  posted_at: string | null;
  reply_count: number | null;
  mine: boolean;
}

export interface CommentPage {
  comments: Comment[];
  next_cursor: string | null;
}

export interface ReplyPage {
  replies: Comment[];
  next_cursor: string | null;
}

export interface Engagement {
  likes: number;
  dislikes: number;
  comments: number;
  my_rating?: 'like' | 'dislike' | null;
}

export interface WatchEntry {
  video_id: string;
  title?: string | null;
  duration_s?: number | null;
  position_s: number;
  finished: boolean;
  watched_at?: string | null;
}

export interface Progress {
  video_id: string;
  position_s: number;
  duration_s: number | null;
  finished: boolean;
}

export interface SearchPage {
  q: string;
  total: number;
  page: number;
  limit: number;
  videos: VideoItem[];
}
