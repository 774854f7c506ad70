"""Fill in the perceptual hashes of images stored without them; resumable.

Images loaded before migration 0015, decoded on the GPU (no Pillow pixels in the worker), or
stored by the face loader have ``images.phash`` NULL. :func:`fill_hashes` reads each such
file again from its ``file://`` URI with the loader's limits, checks that its bytes are still
the ones stored (SHA-256), decodes it (:func:`pgvision.ingest.images.decode_image`) and stores
:func:`pgvision.ingest.perceptual_hash.perceptual_hash`, one transaction per batch. A rerun
continues with the images still without a hash; files that cannot be used are counted by
reason and left NULL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from tqdm import tqdm

from pgvision.errors import InvalidValue
from pgvision.ingest.files import FileSkipped, read_file, sha256_bytes
from pgvision.ingest.images import decode_image
from pgvision.ingest.perceptual_hash import perceptual_hash
from pgvision.review.page import path_of

__all__ = ["HASH_DRAFT_SIZE", "FillReport", "fill_hashes"]

#: JPEG DCT-scaling target when decoding for the hash alone (shorter side >= 256 px, the
#: resize of the ImageNet models' preprocessing): the hash sees a 128 px reduction.
HASH_DRAFT_SIZE: int = 256


@dataclass
class FillReport:
    """What :func:`fill_hashes` did.

    Attributes:
        hashed: images whose hashes this run stored.
        remaining: images still without a hash afterwards (skipped ones included).
        skipped: ``{reason: count}`` of images whose file could not be used: the loader's
            reasons (:data:`pgvision.ingest.files.SKIP_REASONS`), ``changed`` (the file's
            bytes are no longer the stored image's) and ``not-a-file`` (not a ``file://`` URI).
        skipped_files: ``[(path or uri, reason, detail)]`` in the order met.
    """

    hashed: int = 0
    remaining: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        """Record one image whose file could not be used."""
        self.skipped[reason] += 1
        self.skipped_files.append((path, reason, detail))

    def text(self) -> str:
        """``hashed 120 images; skipped 2 (1 changed, 1 unreadable); 2 still without a hash``."""
        total = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        skipped = f"skipped {total} ({reasons})" if total else "skipped 0"
        return f"hashed {self.hashed} images; {skipped}; {self.remaining} still without a hash"


def _hash_one(uri: str, sha256: bytes) -> tuple[str, str] | tuple[None, tuple[str, str, str]]:
    if not uri.startswith("file://"):
        return None, (uri, "not-a-file", "only file:// URIs can be read again")
    path = path_of(uri)
    try:
        data = read_file(path)
        if sha256_bytes(data) != sha256:
            return None, (path, "changed", "the file's bytes are no longer those of the stored image")
        decoded = decode_image(data, draft_size=HASH_DRAFT_SIZE)
    except FileSkipped as exc:
        return None, (path, exc.reason, exc.detail)
    h = perceptual_hash(decoded.image)
    return (h.phash, h.crops), None


def fill_hashes(conn: psycopg.Connection, *, batch_size: int = 64, progress: bool = True,
                on_batch: Callable[[int], None] | None = None) -> FillReport:
    """Compute and store the perceptual hashes of every image that has none.

    Args:
        conn: an autocommit connection to the primary, as the schema's owner or a
            ``pgvision_loader`` (``UPDATE (phash, phash_crops)`` of images).
        batch_size: images per transaction (>= 1).
        progress: a tqdm bar on stderr.
        on_batch: called with the images hashed so far after each committed batch.

    Returns:
        :class:`FillReport`.

    Raises:
        pgvision.errors.InvalidValue: ``batch_size`` below 1.
        psycopg.Error: the server refused (e.g. no UPDATE right); batches committed stay.
    """
    if batch_size < 1:
        raise InvalidValue(f"--batch-size must be at least 1, got {batch_size}")
    report = FillReport()
    total = conn.execute("SELECT count(*) FROM pgvision.images WHERE phash IS NULL").fetchone()[0]
    last = 0
    with tqdm(total=total, unit="img", disable=not progress, desc="hashing") as bar:
        while True:
            rows = conn.execute(
                "SELECT image_id, uri, sha256 FROM pgvision.images WHERE phash IS NULL AND image_id > %s "
                "ORDER BY image_id LIMIT %s", (last, batch_size)).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            ids, phashes, crops = [], [], []
            for image_id, uri, sha256 in rows:
                hashes, skipped = _hash_one(uri, bytes(sha256))
                if hashes is None:
                    report.skip(*skipped)
                    continue
                ids.append(image_id)
                phashes.append(hashes[0])
                crops.append(hashes[1])
            if ids:
                with conn.transaction():
                    cur = conn.execute(
                        "UPDATE pgvision.images i SET phash = u.phash::bit(64), phash_crops = u.crops::bit(576) "
                        "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(image_id, phash, crops) "
                        "WHERE i.image_id = u.image_id AND i.phash IS NULL", (ids, phashes, crops))
                    report.hashed += cur.rowcount
            bar.update(len(rows))
            if on_batch:
                on_batch(report.hashed)
    report.remaining = conn.execute("SELECT count(*) FROM pgvision.images WHERE phash IS NULL").fetchone()[0]
    return report
