#!/usr/bin/env python3
"""Writes top_artists.jsonl, the golden file of the default pipeline's `top_artists_file` output, from
the fixture alone (not from tributary's output): per genre, the 3 artists with the largest total of
streams x 1e8, ties by artist ascending, each row with the genre's average streams.

Sums run in capture order, as the pipeline folds records, so the floats match to the last bit.
Run from the repository root: python3 tests/golden/top_artists.py
"""
import json
from collections import defaultdict

totals = defaultdict(lambda: defaultdict(float))
sums = defaultdict(float)
counts = defaultdict(int)
with open("fixtures/music_streaming_events.jsonl") as f:
    for line in f:
        payload = json.loads(json.loads(line)["value"])
        streams = payload["streams"] * 1e8
        genre, artist = payload["genre"], payload["artist"]
        if artist in totals[genre]:
            totals[genre][artist] += streams
        else:
            totals[genre][artist] = streams
        sums[genre] += streams
        counts[genre] += 1

with open("tests/golden/top_artists.jsonl", "w") as out:
    for genre in sorted(totals, key=lambda g: g.encode()):
        ranked = sorted(totals[genre].items(), key=lambda a: (-a[1], a[0].encode()))[:3]
        for rank, (artist, total) in enumerate(ranked, 1):
            row = {
                "window_start": None,
                "window_end": None,
                "genre": genre,
                "rank": rank,
                "artist": artist,
                "total": total,
                "genre_avg": sums[genre] / counts[genre],
            }
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
