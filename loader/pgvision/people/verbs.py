"""The people verbs from Python: list, show, name, merge, move, split, ignore.

Each verb is one SQL function call (one transaction, one ``pgvision.people_audit`` row);
SQL checks the arguments and raises with a SQLSTATE and a one-line message (see the
functions' headers in sql/functions/people_*.v1.sql), which ``cli.common.run_guarded``
prints as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass
class Person:
    """A row of the ``pgvision.people`` view.

    Attributes:
        identity_id: the person; name: None when unnamed.
        faces, photos, hand_faces: counts (hand_faces: placed by hand, never moved by clustering).
        cover_uri, cover_box: the cover face's photo and box (left, top, right, bottom) in pixels.
    """

    identity_id: int
    name: str | None
    faces: int
    photos: int
    hand_faces: int
    cover_uri: str | None
    cover_box: tuple[int, int, int, int] | None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["cover_box"] = list(self.cover_box) if self.cover_box else None
        return d


@dataclass
class PersonFace:
    """One face of a person: face_id, its photo (image_id, uri), box in pixels, assigned_by."""

    face_id: int
    image_id: int
    uri: str
    box: tuple[int, int, int, int]
    assigned_by: str | None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["box"] = list(self.box)
        return d


def list_people(conn: psycopg.Connection, unnamed: bool = False, limit: int | None = None) -> list[Person]:
    """People with at least one face, the most faces first (then identity_id).

    Args:
        unnamed: only people without a name.
        limit: at most this many (None = all).
    """
    rows = conn.execute(
        "SELECT identity_id, name, faces, photos, hand_faces, cover_uri, cover_box FROM pgvision.people "
        "WHERE faces > 0 AND (NOT %s OR name IS NULL) ORDER BY faces DESC, identity_id LIMIT %s",
        (unnamed, limit),
    ).fetchall()
    return [Person(*r[:6], tuple(r[6]) if r[6] else None) for r in rows]


def get_person(conn: psycopg.Connection, identity_id: int) -> Person | None:
    """The person ``identity_id`` (None if there is none)."""
    r = conn.execute(
        "SELECT identity_id, name, faces, photos, hand_faces, cover_uri, cover_box FROM pgvision.people "
        "WHERE identity_id = %s",
        (identity_id,),
    ).fetchone()
    return Person(*r[:6], tuple(r[6]) if r[6] else None) if r else None


def person_faces(conn: psycopg.Connection, identity_id: int) -> list[PersonFace]:
    """Every face of the person, hand-placed first, then by face_id."""
    rows = conn.execute(
        "SELECT f.face_id, f.image_id, i.uri, f.box_left, f.box_top, f.box_right, f.box_bottom, f.assigned_by "
        "FROM pgvision.faces f JOIN pgvision.images i ON i.image_id = f.image_id WHERE f.identity_id = %s "
        "ORDER BY (f.assigned_by = 'hand') DESC, f.face_id",
        (identity_id,),
    ).fetchall()
    return [PersonFace(r[0], r[1], r[2], tuple(r[3:7]), r[7]) for r in rows]


def _one(conn: psycopg.Connection, query: str, args: tuple) -> tuple[int, str | None, int]:
    return conn.execute(query, args).fetchone()


def name_person(conn: psycopg.Connection, identity_id: int, name: str | None) -> tuple[int, str | None, int]:
    """Name, rename or (``None``) unname a person; returns (identity_id, name, faces)."""
    return _one(conn, "SELECT * FROM pgvision.people_name(%s::bigint, %s::text)", (identity_id, name))


def merge_people(conn: psycopg.Connection, into: int, other: int) -> tuple[int, str | None, int]:
    """Merge ``other`` into ``into``; returns the merged person (identity_id, name, faces)."""
    return _one(conn, "SELECT * FROM pgvision.people_merge(%s::bigint, %s::bigint)", (into, other))


def move_faces(conn: psycopg.Connection, face_ids: list[int], to: int | None) -> tuple[int, str | None, int]:
    """Move faces to person ``to`` (None = a new unnamed person); returns that person."""
    return _one(conn, "SELECT * FROM pgvision.people_move(%s::bigint[], %s::bigint)", (face_ids, to))


def split_person(conn: psycopg.Connection, identity_id: int, face_ids: list[int]) -> tuple[int, str | None, int]:
    """Split ``face_ids`` off the person into a new unnamed one; returns the new person."""
    return _one(conn, "SELECT * FROM pgvision.people_split(%s::bigint, %s::bigint[])", (identity_id, face_ids))


def ignore_faces(conn: psycopg.Connection, face_ids: list[int], ignore: bool = True) -> list[tuple[int, bool]]:
    """Mark faces as not a face (``ignore``) or take the mark back; returns (face_id, ignored) rows."""
    return conn.execute(
        "SELECT * FROM pgvision.people_ignore(%s::bigint[], %s::boolean)", (face_ids, ignore)
    ).fetchall()
