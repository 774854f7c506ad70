"""Duplicate groups from SQL: ``pgvision.duplicate_groups`` and ``pgvision.duplicates_of``.

Rows are dicts with the columns of ``pgvision.duplicate_hit``: ``group_id`` (the keeper's
image_id), ``image_id``, ``uri``, ``label``, ``is_keeper``, ``distance`` (embedding distance
to the keeper, the model's metric), ``hash_distance`` (bits 0..64 to the keeper, None
without hashes), ``width``, ``height``; groups by ``group_id``, keeper first.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

__all__ = ["COLUMNS", "TIERS", "find_duplicates_of", "find_groups", "images_without_hash", "split_groups"]

#: The tiers of ``pgvision.duplicate_groups``: ``same`` (hash and embedding agree) and
#: ``similar`` (embedding only).
TIERS: tuple[str, ...] = ("same", "similar")

#: Columns of ``pgvision.duplicate_hit``, in order.
COLUMNS: tuple[str, ...] = ("group_id", "image_id", "uri", "label", "is_keeper", "distance", "hash_distance",
                            "width", "height")


def find_groups(conn: psycopg.Connection, tier: str = "same", model: str | None = None,
                max_distance: float | None = None, max_hash_distance: int | None = None) -> list[dict]:
    """Every duplicate group: the rows of ``pgvision.duplicate_groups``.

    Args:
        conn: a connection (a read-only standby does).
        tier: ``same`` or ``similar``.
        model: image model name; None = the default image model.
        max_distance: embedding distance limit in the model's metric; None = the tier's default.
        max_hash_distance: hash limit in bits 0..64 (tier same); None = the default (10).

    Raises:
        psycopg.Error: the function's checks (SQLSTATE 22023 bad tier or limit, 42704
            unknown model, 55000 no image model yet; see its header).
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM pgvision.duplicate_groups(%(tier)s, model => %(model)s, "
            "max_distance => %(d)s::float8, max_hash_distance => %(h)s::integer)",
            {"tier": tier, "model": model, "d": max_distance, "h": max_hash_distance},
        ).fetchall()


def find_duplicates_of(conn: psycopg.Connection, image_id: int, tier: str = "same", model: str | None = None,
                       max_distance: float | None = None, max_hash_distance: int | None = None) -> list[dict]:
    """The image and its direct duplicates (``pgvision.duplicates_of``), keeper first; [] when none.

    Raises:
        psycopg.Error: as :func:`find_groups`, and P0002 for an unknown image_id.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM pgvision.duplicates_of(%(id)s::bigint, %(tier)s, model => %(model)s, "
            "max_distance => %(d)s::float8, max_hash_distance => %(h)s::integer)",
            {"id": image_id, "tier": tier, "model": model, "d": max_distance, "h": max_hash_distance},
        ).fetchall()


def images_without_hash(conn: psycopg.Connection) -> int:
    """How many stored images have no perceptual hash yet (they cannot be in a ``same`` group)."""
    return conn.execute("SELECT count(*) FROM pgvision.images WHERE phash IS NULL").fetchone()[0]


def split_groups(rows: list[dict]) -> list[list[dict]]:
    """The rows cut into groups (consecutive rows of one ``group_id``), order kept."""
    groups: list[list[dict]] = []
    for row in rows:
        if not groups or groups[-1][0]["group_id"] != row["group_id"]:
            groups.append([])
        groups[-1].append(row)
    return groups
