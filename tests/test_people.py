"""People in SQL: clustering on the ANN index, the people verbs, their audit and rights.

Galleries are 2-d L2 vectors whose distances are written next to them (tests/peoplehelpers.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psycopg
import pytest

from peoplehelpers import LOOKALIKES, add_faces, groups, people_of
from sqlhelpers import grant_default

A = {"a0", "a1", "a2", "a3"}
C = {"c0", "c1", "c2", "c3"}


def cluster(conn, mode="incremental", **kw):
    args = ", ".join(f"{k} => %({k})s" for k in kw)
    return conn.execute(
        f"SELECT mode, phase, assigned, created, unassigned FROM pgvision.cluster_faces('face2d', "
        f"%(mode)s, max_distance => 0.3{', ' + args if args else ''})",
        {"mode": mode, **kw},
    ).fetchone()


def audit(conn):
    return conn.execute(
        "SELECT action, identity_ids, face_ids, by_user FROM pgvision.people_audit "
        "WHERE action <> 'cluster' ORDER BY audit_id"
    ).fetchall()


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_lookalike_groups_joined_by_one_close_pair_stay_two_people(conn, mode):
    """A and C touch through a3-c0 (0.25) only: a single-linkage rule would merge them.
    n0 is alone; p0-p1 are 2 faces (< min_faces 3): the three stay unassigned."""
    ids = add_faces(conn, LOOKALIKES)
    assert cluster(conn, mode) == (mode, "done", 8, 2, 3)
    assert groups(conn, ids) == [A, C]
    assert conn.execute("SELECT count(*) FROM pgvision.cluster_deferred").fetchone()[0] == 3
    unassigned = conn.execute("SELECT uri, deferred FROM pgvision.unassigned_faces ORDER BY face_id").fetchall()
    assert unassigned == [("file:///n0.jpg", True), ("file:///p0.jpg", True), ("file:///p1.jpg", True)]
    people = conn.execute(
        "SELECT name, faces, photos, hand_faces, cover_uri, cover_box FROM pgvision.people ORDER BY identity_id"
    ).fetchall()
    assert people == [
        (None, 4, 4, 0, "file:///a0.jpg", [0, 0, 10, 10]),
        (None, 4, 4, 0, "file:///c0.jpg", [0, 0, 10, 10]),
    ]
    assert conn.execute("SELECT DISTINCT assigned_by FROM pgvision.faces WHERE identity_id IS NOT NULL").fetchall() == [
        ("cluster",)
    ]


def test_incremental_in_batches_of_two_finds_the_same_people(conn):
    ids = add_faces(conn, LOOKALIKES)
    assert cluster(conn, batch_size=2) == ("incremental", "done", 8, 2, 3)
    assert groups(conn, ids) == [A, C]


def test_new_faces_join_with_two_close_pairs_and_one_face_per_photo(conn):
    """x (0.05, 0.05) is within 0.3 of all of A (a0 0.071, a1 0.071, a2 0.05, a3 0.15): joins A.
    w (-0.25, -0.15) is near a0 only (0.292; a1 0.354, a2 0.403): one close pair, stays out.
    y (0.06, 0.05) is as close to A as x, but lies in a0's photo: A has a face there already."""
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    new = add_faces(conn, {"x": (0.05, 0.05), "w": (-0.25, -0.15), "y": (0.06, 0.05)}, photo={"y": "a0"})
    assert cluster(conn) == ("incremental", "done", 1, 0, 5)
    person_a = people_of(conn, ids)["a0"]
    assert people_of(conn, new) == {"x": person_a, "w": None, "y": None}
    assert conn.execute("SELECT assigned_by FROM pgvision.faces WHERE face_id = %s", (new["x"],)).fetchone() == (
        "cluster",
    )
    # nothing new near the deferred faces: a rerun changes nothing
    assert cluster(conn) == ("incremental", "done", 0, 0, 5)


def test_full_pass_keeps_names_hand_faces_and_ids(conn):
    """Naming A marks its faces hand-placed; p0 (3, 0) is moved into A by hand. The full
    pass rebuilds C (it keeps its id: it overlaps the old C most) and leaves A alone; p1
    (0.1 from p0, nothing else within 0.3) has one close pair with A: it stays out."""
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    before = people_of(conn, ids)
    pa, pc = before["a0"], before["c0"]
    assert conn.execute("SELECT * FROM pgvision.people_name(%s, 'Ann')", (pa,)).fetchone() == (pa, "Ann", 4)
    assert conn.execute("SELECT * FROM pgvision.people_move(ARRAY[%s]::bigint[], %s)", (ids["p0"], pa)).fetchone() == (
        pa,
        "Ann",
        5,
    )
    assert cluster(conn, "full") == ("full", "done", 4, 0, 2)
    after = people_of(conn, ids)
    assert {k for k, v in after.items() if v == pa} == A | {"p0"}
    assert {k for k, v in after.items() if v == pc} == C
    assert (after["n0"], after["p1"]) == (None, None)
    assert conn.execute("SELECT name, hand_faces FROM pgvision.people WHERE identity_id = %s", (pa,)).fetchone() == (
        "Ann",
        5,
    )
    assert [(a, i, f) for a, i, f, _ in audit(conn)] == [
        ("name", [pa], sorted(ids[k] for k in A)),
        ("move", [pa], [ids["p0"]]),
    ]


def test_a_hand_placed_face_brings_its_close_group_along(conn):
    """c3 moved into A by hand: A is now a person somebody touched, so a full pass keeps
    all its faces fixed, and c0-c2 have 4 close pairs with them (c0-a3 0.25, c0-c3 0.2,
    c1-c3 0.112, c2-c3 0.112): they join A, and the emptied C is removed."""
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    pa, pc = people_of(conn, ids)["a0"], people_of(conn, ids)["c0"]
    conn.execute("SELECT pgvision.people_move(ARRAY[%s]::bigint[], %s)", (ids["c3"], pa))
    assert cluster(conn, "full") == ("full", "done", 3, 0, 3)
    assert groups(conn, ids) == [A | C]
    assert conn.execute("SELECT count(*) FROM pgvision.identities WHERE identity_id = %s", (pc,)).fetchone() == (0,)


def test_identify_returns_an_unnamed_person(conn):
    """identify's contract is unchanged; a person found by clustering has name NULL."""
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    person_a = people_of(conn, ids)["a0"]
    row = conn.execute(
        "SELECT identity_id, name, is_match FROM pgvision.identify('[0.05,0.05]', 'face2d') LIMIT 1"
    ).fetchone()
    assert row == (person_a, None, True)
    row = conn.execute(
        "SELECT identity_id, name FROM pgvision.identify_face(%s, 'face2d') LIMIT 1", (ids["a1"],)
    ).fetchone()
    assert row == (person_a, None)


def test_merge_split_move_ignore_are_audited(conn):
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    pa, pc = people_of(conn, ids)["a0"], people_of(conn, ids)["c0"]
    conn.execute("SELECT pgvision.people_name(%s, 'Cy')", (pc,))
    assert conn.execute("SELECT * FROM pgvision.people_merge(%s, %s)", (pa, pc)).fetchone() == (pa, "Cy", 8)
    assert conn.execute("SELECT count(*) FROM pgvision.identities WHERE identity_id = %s", (pc,)).fetchone() == (0,)
    new = conn.execute(
        "SELECT identity_id, name, faces FROM pgvision.people_split(%s, ARRAY[%s, %s]::bigint[])",
        (pa, ids["c2"], ids["c3"]),
    ).fetchone()
    assert new[1:] == (None, 2)
    moved = conn.execute(
        "SELECT identity_id, faces FROM pgvision.people_move(ARRAY[%s]::bigint[])", (ids["n0"],)
    ).fetchone()
    assert moved[1] == 1
    assert conn.execute("SELECT * FROM pgvision.people_ignore(ARRAY[%s]::bigint[])", (ids["n0"],)).fetchall() == [
        (ids["n0"], True)
    ]
    # the person n0 alone made is gone with it (unnamed, no face left)
    assert conn.execute("SELECT count(*) FROM pgvision.identities WHERE identity_id = %s", (moved[0],)).fetchone() == (
        0,
    )
    assert conn.execute("SELECT uri FROM pgvision.unassigned_faces ORDER BY face_id").fetchall() == [
        ("file:///p0.jpg",),
        ("file:///p1.jpg",),
    ]
    rows = audit(conn)
    assert [(a, i) for a, i, _, _ in rows] == [
        ("name", [pc]),
        ("merge", [pa, pc]),
        ("split", [new[0], pa]),
        ("move", [moved[0]]),
        ("ignore", [moved[0]]),
    ]
    assert rows[1][2] == sorted(ids[k] for k in C)
    assert rows[2][2] == [ids["c2"], ids["c3"]]
    assert {r[3] for r in rows} == {conn.info.user}
    # an ignored face is never clustered again
    cluster(conn, "full")
    assert people_of(conn, ids)["n0"] is None


BAD_CALLS = [
    (
        "SELECT pgvision.people_name({pa}, 'Cy')",
        (
            "the name 'Cy' is already person {pc}'s: merge the two with "
            "pgvision.people_merge({pc}, {pa}), or pick another name"
        ),
        "23505",
    ),
    (
        "SELECT pgvision.people_name({pa}, '')",
        ("a name must be 1 to 200 characters, got 0: give a shorter, non-empty name (or NULL to remove it)"),
        "22023",
    ),
    ("SELECT pgvision.people_name(999, 'x')", "no person with identity_id 999", "P0002"),
    (
        "SELECT pgvision.people_merge({pa}, {pa})",
        "cannot merge person {pa} into itself: pass two different people",
        "22023",
    ),
    (
        "SELECT pgvision.people_move(ARRAY[{y}]::bigint[], {pa})",
        (
            "person {pa} already has face {a0} in the photo of "
            "face {y} (image {img}): a person has at most one face per photo; move face {a0} out first"
        ),
        "23505",
    ),
    (
        "SELECT pgvision.people_split({pa}, ARRAY[{c1}]::bigint[])",
        ("face {c1} is not person {pa}'s (it is person {pc}): split takes faces of the person only"),
        "22023",
    ),
    (
        "SELECT pgvision.people_split({pc}, ARRAY[{c0}, {c1}, {c2}, {c3}]::bigint[])",
        ("face_ids hold every face of person {pc}: leave at least one (or rename the person with people_name)"),
        "22023",
    ),
    (
        "SELECT pgvision.people_move('{{}}'::bigint[])",
        ("face_ids must name at least one face: pass ARRAY[face_id, ...] from pgvision.faces"),
        "22004",
    ),
    (
        "SELECT pgvision.cluster_faces('face2d', 'nightly')",
        "mode must be 'incremental' or 'full', got 'nightly'",
        "22023",
    ),
    (
        "SELECT pgvision.cluster_faces('face2d', max_distance => 'NaN')",
        ("max_distance must be a finite distance > 0, got NaN: pass max_distance => a distance such as 0.5 (dlib, L2)"),
        "22023",
    ),
    ("SELECT pgvision.cluster_faces('face2d', min_faces => 0)", "min_faces must be between 1 and 1000, got 0", "22023"),
]


def test_bad_calls_say_what_and_change_nothing(conn):
    ids = add_faces(conn, LOOKALIKES)
    cluster(conn, "full")
    conn.execute("SELECT pgvision.people_name(%s, 'Cy')", (people_of(conn, ids)["c0"],))
    y = add_faces(conn, {"y": (0.06, 0.05)}, photo={"y": "a0"})["y"]
    keys = {k: v for k, v in ids.items()}
    fmt = dict(
        keys,
        pa=people_of(conn, ids)["a0"],
        pc=people_of(conn, ids)["c0"],
        y=y,
        img=conn.execute("SELECT image_id FROM pgvision.faces WHERE face_id = %s", (y,)).fetchone()[0],
    )
    before = conn.execute("SELECT face_id, identity_id, assigned_by, ignored FROM pgvision.faces ORDER BY 1").fetchall()
    n_audit = conn.execute("SELECT count(*) FROM pgvision.people_audit").fetchone()
    for call, message, sqlstate in BAD_CALLS:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(call.format(**fmt))
        assert (err.value.diag.message_primary, err.value.sqlstate) == (message.format(**fmt), sqlstate)
    assert (
        conn.execute("SELECT face_id, identity_id, assigned_by, ignored FROM pgvision.faces ORDER BY 1").fetchall()
        == before
    )
    assert conn.execute("SELECT count(*) FROM pgvision.people_audit").fetchone() == n_audit


def test_one_face_per_photo_is_a_constraint(conn):
    ids = add_faces(conn, {"a": (0, 0), "b": (0, 0.1)}, photo={"b": "a"})
    ann = conn.execute("INSERT INTO pgvision.identities (name) VALUES ('ann') RETURNING identity_id").fetchone()[0]
    conn.execute("UPDATE pgvision.faces SET identity_id = %s WHERE face_id = %s", (ann, ids["a"]))
    assert conn.execute("SELECT assigned_by FROM pgvision.faces WHERE face_id = %s", (ids["a"],)).fetchone() == (
        "hand",
    )
    with pytest.raises(psycopg.errors.ExclusionViolation):
        conn.execute("UPDATE pgvision.faces SET identity_id = %s WHERE face_id = %s", (ann, ids["b"]))
    # one statement may swap the two faces (checked at its end)
    conn.execute(
        "UPDATE pgvision.faces SET identity_id = CASE WHEN face_id = %s THEN NULL ELSE %s END WHERE face_id = ANY(%s)",
        (ids["a"], ann, [ids["a"], ids["b"]]),
    )
    assert people_of(conn, ids) == {"a": None, "b": ann}


PEOPLE_CALLS = [
    "SELECT pgvision.cluster_faces('face2d', 'full', max_distance => 0.3)",
    "SELECT pgvision.cluster_start('face2d')",
    "SELECT pgvision.cluster_step(1)",
    "SELECT pgvision.people_name(1, 'x')",
    "SELECT pgvision.people_merge(1, 2)",
    "SELECT pgvision.people_move(ARRAY[1]::bigint[])",
    "SELECT pgvision.people_split(1, ARRAY[1]::bigint[])",
    "SELECT pgvision.people_ignore(ARRAY[1]::bigint[])",
]


def test_reader_may_not_call_the_people_functions(conn):
    add_faces(conn, LOOKALIKES)
    conn.execute("SET ROLE pgvision_reader")
    for call in PEOPLE_CALLS:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            conn.execute(call)
    conn.execute("RESET ROLE")


def test_reader_reads_the_views_and_loader_runs_everything(conn):
    ids = add_faces(conn, LOOKALIKES)
    grant_default(conn, "pgvision_loader", "pgvision_reader")  # row-level security: granted collections only
    conn.execute("SET ROLE pgvision_loader")
    assert cluster(conn, "full") == ("full", "done", 8, 2, 3)
    pa, pc = people_of(conn, ids)["a0"], people_of(conn, ids)["c0"]
    conn.execute("SELECT pgvision.people_name(%s, 'Ann')", (pa,))
    new = conn.execute(
        "SELECT identity_id FROM pgvision.people_split(%s, ARRAY[%s]::bigint[])", (pc, ids["c3"])
    ).fetchone()[0]
    conn.execute("SELECT pgvision.people_merge(%s, %s)", (pc, new))
    conn.execute("SELECT pgvision.people_move(ARRAY[%s]::bigint[])", (ids["p0"],))
    conn.execute("SELECT pgvision.people_ignore(ARRAY[%s]::bigint[])", (ids["p0"],))
    assert cluster(conn, "incremental") == ("incremental", "done", 0, 0, 2)
    assert audit(conn)[0][3] == "pgvision_loader"
    assert len(conn.execute("SELECT * FROM pgvision.people_audit").fetchall()) == 7
    conn.execute("RESET ROLE")
    conn.execute("SET ROLE pgvision_reader")
    assert conn.execute("SELECT name, faces FROM pgvision.people ORDER BY identity_id").fetchall() == [
        ("Ann", 4),
        (None, 4),
    ]
    assert conn.execute("SELECT count(*) FROM pgvision.unassigned_faces").fetchone() == (2,)
    conn.execute("RESET ROLE")


def test_people_functions_are_security_invoker(conn):
    rows = conn.execute(
        "SELECT p.proname, p.prosecdef FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'pgvision' AND (p.proname LIKE 'people%' OR p.proname LIKE 'cluster%' "
        "OR p.proname LIKE '_cluster%' OR p.proname = '_people_move') ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in rows] == [
        "_cluster_assign",
        "_cluster_distance",
        "_cluster_neighbours",
        "_people_move",
        "cluster_faces",
        "cluster_start",
        "cluster_step",
        "people_ignore",
        "people_merge",
        "people_move",
        "people_name",
        "people_split",
    ]
    assert not any(r[1] for r in rows)


def test_default_max_distance_follows_the_calibration(conn):
    """dlib uncalibrated: 0.50; calibrated at 0.4745: x 1.1 = 0.5220; other models: threshold x 5/6."""
    from pgvision.registry import ModelSpec, register_model

    dlib = register_model(conn, ModelSpec("dlib", "face", 128, "l2", threshold=0.6))
    register_model(conn, ModelSpec("other", "face", 4, "cosine", threshold=0.3))

    def default(name):
        return round(
            conn.execute(
                "SELECT pgvision._cluster_distance(m) FROM pgvision.models m WHERE name = %s", (name,)
            ).fetchone()[0],
            4,
        )

    assert (default("dlib"), default("other")) == (0.5, 0.25)
    conn.execute(
        "INSERT INTO pgvision.calibrations (model_id, threshold, genuine_pairs, impostor_pairs) "
        "VALUES (%s, 0.4745, 10, 10)",
        (dlib,),
    )
    assert default("dlib") == 0.522


CHILD = textwrap.dedent("""
    import sys, psycopg
    url, mode, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with psycopg.connect(url, autocommit=True) as conn:
        pass_id = conn.execute("SELECT pass_id FROM pgvision.cluster_start('face2d', %s, 0.3)", (mode,)).fetchone()[0]
        step = 0
        while True:
            step += 1
            with conn.transaction():
                phase = conn.execute("SELECT phase FROM pgvision.cluster_step(%s, 2)", (pass_id,)).fetchone()[0]
                if step == stop_at:
                    print("in batch", flush=True)
                    conn.execute("SELECT pg_sleep(60)")
            if phase == "done":
                break
""")


@pytest.mark.parametrize("mode, stop_at", [("incremental", 3), ("full", 8)])
def test_kill_9_in_a_batch_leaves_whole_batches_and_a_rerun_goes_on(database_url, conn, tmp_path, mode, stop_at):
    """The client is killed with SIGKILL while a batch's transaction is open (incremental:
    the 3rd batch of 2 faces; full: the assign step, after 6 neighbour batches and the step that ends them): that
    batch is rolled back, the committed ones stay, and the rerun resumes the same pass and
    ends with the people an uninterrupted pass finds."""
    ids = add_faces(conn, LOOKALIKES)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), database_url, mode, str(stop_at)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert child.stdout.readline() == "in batch\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
        "AND pid <> pg_backend_pid()"
    )
    pass_row = conn.execute("SELECT pass_id, phase, cursor FROM pgvision.cluster_passes").fetchone()
    assert pass_row[1] == ("incremental" if mode == "incremental" else "assign")
    assigned = conn.execute("SELECT count(*) FROM pgvision.faces WHERE identity_id IS NOT NULL").fetchone()[0]
    if mode == "full":
        assert assigned == 0  # the assign step is one transaction: nothing of it
    # no person without faces, no face marked without a person
    assert conn.execute("SELECT count(*) FROM pgvision.people WHERE faces = 0").fetchone() == (0,)
    assert (
        conn.execute("SELECT pass_id FROM pgvision.cluster_start('face2d', %s)", (mode,)).fetchone()[0] == pass_row[0]
    )
    while conn.execute("SELECT phase FROM pgvision.cluster_step(%s, 2)", (pass_row[0],)).fetchone()[0] != "done":
        pass
    assert groups(conn, ids) == [A, C]
    assert conn.execute("SELECT count(*) FROM pgvision.cluster_edges").fetchone() == (0,)


def test_migration_round_trip_with_people(empty_database_url):
    """0013 -> head with an enrolled face, cluster, then down to 0013 (the unnamed people go,
    the named one and every face stay) and up again."""
    from pgvision import migrate
    from pgvision.server.connection import connect

    url = empty_database_url
    migrate.upgrade(url, "0013")
    with connect(url, autocommit=True) as conn:
        ids = add_faces(conn, LOOKALIKES)
        ann = conn.execute("INSERT INTO pgvision.identities (name) VALUES ('ann') RETURNING identity_id").fetchone()[0]
        conn.execute("UPDATE pgvision.faces SET identity_id = %s WHERE face_id = %s", (ann, ids["a0"]))
    migrate.upgrade(url, "0014")
    with connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT assigned_by FROM pgvision.faces WHERE face_id = %s", (ids["a0"],)).fetchone() == (
            "hand",
        )
        assert cluster(conn, "full") == ("full", "done", 7, 1, 3)  # a1-a3 join ann (3 close pairs); C is new
        assert groups(conn, ids) == [A, C]
    migrate.downgrade(url, "0013")
    with connect(url, autocommit=True) as conn:
        assert groups(conn, ids) == [A]
        assert conn.execute("SELECT name FROM pgvision.identities").fetchall() == [("ann",)]
        assert conn.execute("SELECT count(*) FROM pgvision.faces").fetchone() == (11,)
    migrate.upgrade(url)
    with connect(url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT DISTINCT assigned_by FROM pgvision.faces WHERE identity_id IS NOT NULL"
        ).fetchall() == [("hand",)]
        assert cluster(conn, "full") == ("full", "done", 4, 1, 3)
        assert groups(conn, ids) == [A, C]


def test_bcubed_and_pairwise_scores_by_hand():
    """labels a a b b, clusters 1 1 1 (none): BCubed precision (2/3 + 2/3 + 1/3 + 1) / 4,
    recall (1 + 1 + 1/2 + 1/2) / 4; pairs put together 3, right 1 (of 2 same-label pairs)."""
    from pgvision.people.scores import score_clustering

    s = score_clustering(["a", "a", "b", "b"], [1, 1, 1, None])
    assert (round(s.bcubed_precision, 4), s.bcubed_recall, round(s.pairwise_precision, 4), s.pairwise_recall) == (
        0.6667,
        0.75,
        0.3333,
        0.5,
    )
    assert (s.items, s.unassigned, s.clusters, s.labels) == (4, 1, 1, 2)
    with pytest.raises(ValueError, match="labels and clusters must be non-empty and of one length, got 1 and 0"):
        score_clustering(["a"], [])


def test_collections_are_clustered_apart(conn):
    """The same eight faces in collections default and bravo: four people, each of one
    collection; a move across collections is refused."""
    from pgvision.tenancy.collection import use_collection

    ids = add_faces(conn, {k: v for k, v in LOOKALIKES.items() if k[0] in "ac"})
    use_collection(conn, "bravo")
    bravo = add_faces(conn, {k + "b": v for k, v in LOOKALIKES.items() if k[0] in "ac"})
    conn.execute("RESET pgvision.collection_id")
    assert cluster(conn, "full") == ("full", "done", 16, 4, 0)
    assert groups(conn, ids) == [A, C]
    assert groups(conn, bravo) == [{k + "b" for k in A}, {k + "b" for k in C}]
    rows = conn.execute(
        "SELECT DISTINCT c.name, i.collection_id = f.collection_id FROM pgvision.faces f "
        "JOIN pgvision.identities i USING (identity_id) JOIN pgvision.collections c "
        "ON c.collection_id = f.collection_id ORDER BY 1"
    ).fetchall()
    assert rows == [("bravo", True), ("default", True)]
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT pgvision.people_move(ARRAY[%s]::bigint[], %s)", (ids["a0"], people_of(conn, bravo)["a0b"]))
    assert err.value.diag.message_primary == (
        f"person {people_of(conn, bravo)['a0b']} is in another collection than the faces (collection 1): "
        "a person holds faces of its own collection only"
    )
