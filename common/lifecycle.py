"""The contract of `video.lifecycle`, for those who publish on it (processors/status.py, the API through
producers/video_events.py) and those who read it (processors/cdn_purge.py).

A status has two spellings: the catalogue's (the `status` column of `videos`, the API's JSON: ``"ready"``) and
the event's (the VideoStatus enum of schemas/VideoStatusChanged.avsc: ``"READY"``). Both are published formats
(stored rows and API answers on one side, an Avro enum other services decode on the other), so neither is
renamed; `EVENT_STATUS` and `CATALOG_STATUS` are the one conversion between them.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# The records video.lifecycle carries (topics.yaml): a status change, or a privacy change (status unchanged).
LIFECYCLE_RECORDS: Final = ("VideoStatusChanged", "VideoPrivacyChanged")

# The VideoStatus enum of schemas/VideoStatusChanged.avsc.
VideoStatus = Literal["UPLOADING", "PROCESSING", "PLAYABLE", "READY", "FAILED", "DELETED"]

CATALOG_STATUS: Final[dict[VideoStatus, str]] = {status: status.lower() for status in get_args(VideoStatus)}
EVENT_STATUS: Final[dict[str, VideoStatus]] = {row: event for event, row in CATALOG_STATUS.items()}
