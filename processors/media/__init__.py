"""Media library for the transcode pipeline: probe, ladder, chunked CMAF encoding, manifests.

Pure functions over local files, no Kafka and no object storage: the Faust agents download the source,
call these, and upload what they wrote.

    probe.probe_source(path, limits)                -> SourceInfo, or raises RejectedUpload(reason)
    ladder.plan_ladder(info)                        -> Ladder (rungs, audio, fps, segment duration)
    ladder.ladder_chunks(ladder, info) / plan_chunks -> [Chunk] (segment-aligned, a few seconds each)
    encode.encode_chunk(source, chunk, rungs, out)  -> {rendition: RenditionChunk(init, codecs, segments)}
    encode.encode_audio(source, out, seg_duration)  -> RenditionChunk for "audio"
    encode.make_poster / encode.make_storyboard     -> poster JPEG; sprite JPEG + WebVTT
    manifests.write_manifests(out, videos, audio)   -> HLS multivariant/media/I-frame playlists + DASH MPD

ffmpeg/ffprobe always run confined (see `tools.py`). `python -m processors.media.probe FILE` and
`python -m processors.media.mp4 FILE` are small command-line aids; `bench/transcode_fanout.py` compares
encoding a chunk's ladder in one process with one process per rung.
"""
