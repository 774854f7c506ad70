"""Size limits of the text and JSON values a load stores, checked before ``COPY``.

A value past a PostgreSQL limit fails the whole batch on the server: a label longer than
a B-tree entry can hold (about 2,700 bytes, PostgreSQL docs "B-Tree Implementation",
``images_label`` indexes it) raises ``program_limit_exceeded`` and every rerun fails the
same way. Checking each row first lets the loader skip just that file, with the reason,
and load the rest of the batch.
"""

from __future__ import annotations

import json
from typing import Sequence

from pgvision.ingest.pg_copy import ImageRecord

#: Largest label, in UTF-8 bytes: well under the B-tree entry limit of ``images_label``
#: (about 2,700 bytes at the 8 KB page size) and far above any folder name (255 bytes on
#: ext4, APFS, NTFS).
MAX_LABEL_BYTES = 1000
#: Largest uri, in UTF-8 bytes: a PATH_MAX (4,096-byte) path with every byte
#: percent-encoded is 12,288.
MAX_URI_BYTES = 16384
#: Largest metadata object, as JSON text in UTF-8 bytes.
MAX_METADATA_BYTES = 65536


def oversized(record: ImageRecord) -> str | None:
    """Why ``record`` cannot be stored (one line naming the value and the limit), or None."""
    for what, value, limit in (("label", record.label, MAX_LABEL_BYTES), ("uri", record.uri, MAX_URI_BYTES)):
        if value is not None and len(value.encode("utf-8", "surrogateescape")) > limit:
            size = len(value.encode("utf-8", "surrogateescape"))
            return (
                f"{what} of {size:,} bytes is longer than the {limit:,}-byte limit: shorten it (e.g. rename the folder)"
            )
    size = len(json.dumps(record.metadata, ensure_ascii=False).encode("utf-8", "surrogateescape"))
    if size > MAX_METADATA_BYTES:
        return f"metadata of {size:,} bytes is larger than the {MAX_METADATA_BYTES:,}-byte limit: store less of it"
    return None


def split_oversized(records: Sequence[ImageRecord]) -> tuple[list[int], list[tuple[int, str]]]:
    """Indices of the records that fit, and ``(index, reason)`` of those that do not."""
    keep: list[int] = []
    rejected: list[tuple[int, str]] = []
    for i, record in enumerate(records):
        reason = oversized(record)
        if reason is None:
            keep.append(i)
        else:
            rejected.append((i, reason))
    return keep, rejected
