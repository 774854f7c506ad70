"""pgvision people ...: the CLI over the people SQL functions, its pages in headless Chromium,
and faces load --cluster on real photos."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest
from click.testing import CliRunner

from browser import assert_all_rendered
from conftest import shared_path
from peoplehelpers import LOOKALIKES, add_faces, people_of
from pgvision.cli import main
from pgvision.ingest.files import file_uri


def invoke(args, database_url):
    return CliRunner().invoke(main, [*args, "--database-url", database_url], catch_exceptions=False)


def test_cluster_list_show_and_the_verbs(conn, database_url):
    ids = add_faces(conn, LOOKALIKES)
    out = invoke(["people", "cluster", "--max-distance", "0.3", "--model", "face2d", "--json"], database_url)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert {k: result[k] for k in ("mode", "faces", "assigned", "created", "unassigned", "resumed")} == {
        "mode": "incremental",
        "faces": 11,
        "assigned": 8,
        "created": 2,
        "unassigned": 3,
        "resumed": False,
    }
    pa, pc = people_of(conn, ids)["a0"], people_of(conn, ids)["c0"]
    out = invoke(["people", "list"], database_url)
    assert out.output == (
        f"{pa:>8}  (unnamed): 4 faces, 4 photos, 0 by hand\n{pc:>8}  (unnamed): 4 faces, 4 photos, 0 by hand\n"
    )
    assert invoke(["people", "name", str(pa), "Ann"], database_url).output == f"named person {pa}: Ann, 4 faces\n"
    out = invoke(["people", "list", "--unnamed", "--json"], database_url)
    assert [json.loads(line)["identity_id"] for line in out.output.splitlines()] == [pc]
    out = invoke(["people", "split", str(pc), str(ids["c3"])], database_url)
    new = conn.execute("SELECT identity_id FROM pgvision.faces WHERE face_id = %s", (ids["c3"],)).fetchone()[0]
    assert out.output == f"split off as person {new}: (unnamed), 1 faces\n"
    assert (
        invoke(["people", "merge", str(pc), str(new)], database_url).output
        == f"merged into person {pc}: (unnamed), 4 faces\n"
    )
    out = invoke(["people", "move", str(ids["n0"]), "--to", "new"], database_url)
    assert out.output.startswith("moved to person ") and out.output.endswith(": (unnamed), 1 faces\n")
    assert invoke(["people", "ignore", str(ids["n0"])], database_url).output == f"ignored: faces {ids['n0']}\n"
    out = invoke(["people", "show", str(pa)], database_url)
    assert out.output.splitlines() == [f"person {pa}: Ann (4 faces)"] + [
        f"  face {ids[k]}  file:///{k}.jpg  box [0, 0, 10, 10]  hand" for k in ("a0", "a1", "a2", "a3")
    ]
    shown = json.loads(invoke(["people", "show", str(pa), "--json"], database_url).output)
    assert (shown["name"], [f["face_id"] for f in shown["face_list"]]) == (
        "Ann",
        [ids[k] for k in ("a0", "a1", "a2", "a3")],
    )
    actions = [r[0] for r in conn.execute("SELECT action FROM pgvision.people_audit ORDER BY audit_id")]
    assert actions == ["cluster", "name", "split", "merge", "move", "ignore"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["people", "show", "999"], "Error: no person with identity_id 999: see pgvision people list\n"),
        (["people", "move", "1", "--to", "ann"], "Error: --to takes a person's identity_id or 'new', got 'ann'\n"),
        (["people", "name", "1"], "Error: give a NAME, or --clear to remove the name (not both)\n"),
        (["people", "merge", "1", "999"], "Error: no person with identity_id 999 (pick one from pgvision.people)\n"),
        (["people", "cluster", "--model", "face2d", "--max-distance", "nan"], None),
    ],
)
def test_bad_input_is_one_line(conn, database_url, args, message):
    add_faces(conn, {"a": (0, 0)})
    conn.execute("INSERT INTO pgvision.identities (name) VALUES ('ann')")
    out = invoke(args, database_url)
    assert out.exit_code != 0
    if message:
        assert out.output == message
    else:
        assert "'nan' is not a finite number." in out.output and "Traceback" not in out.output


def _lfw_gallery(conn, people=("Andre_Agassi", "Colin_Powell"), per_person=3):
    """Faces with real LFW photos (a fixed 110x130 box around the face of the 250x250 photo)
    whose 2-d vectors make one tight group per person (0.05 apart, persons 10 apart)."""
    faces, photos = {}, {}
    for p, name in enumerate(people):
        for j, path in enumerate(sorted(shared_path("data", "lfw_faces", name).glob("*.jpg"))[:per_person]):
            faces[f"{name}{j}"] = (10.0 * p, 0.05 * j)
            photos[f"{name}{j}"] = path
    ids = add_faces(conn, faces)
    for key, path in photos.items():
        conn.execute(
            "UPDATE pgvision.images SET uri = %s, width = 250, height = 250 WHERE image_id = "
            "(SELECT image_id FROM pgvision.faces WHERE face_id = %s)",
            (file_uri(path), ids[key]),
        )
    conn.execute("UPDATE pgvision.faces SET box_left = 70, box_top = 60, box_right = 180, box_bottom = 190")
    return ids


def test_people_pages_render_in_chromium(conn, database_url, tmp_path):
    ids = _lfw_gallery(conn)
    assert (
        invoke(["people", "cluster", "--model", "face2d", "--max-distance", "0.3", "-q"], database_url).exit_code == 0
    )
    page = tmp_path / "people.html"
    out = invoke(["people", "list", "--html", str(page)], database_url)
    assert out.output.splitlines()[-1] == f"page: {page} (6 thumbnails, 0 not shown)"
    images = assert_all_rendered(page)
    assert len(images) == 6 and not any(im["placeholder"] for im in images)
    # the 110x130 box at 112 px: 95x112
    assert {(im["naturalWidth"], im["naturalHeight"]) for im in images} == {(95, 112)}
    person = people_of(conn, ids)["Andre_Agassi0"]
    invoke(["people", "name", str(person), "Andre <Agassi>"], database_url)
    one = tmp_path / "one.html"
    out = invoke(["people", "show", str(person), "--html", str(one)], database_url)
    assert out.output.splitlines()[-1] == f"page: {one} (3 thumbnails, 0 not shown)"
    images = assert_all_rendered(one)
    assert [im["marked"] for im in images] == [True, True, True]  # named: hand-placed
    assert f"person {person}: Andre &lt;Agassi&gt; (3 faces)" in one.read_text()


@pytest.mark.slow
def test_faces_load_cluster_groups_real_photos(database_url, tmp_path):
    """12 LFW photos of 3 people loaded without names; --cluster groups them (dlib, defaults)."""
    pytest.importorskip("dlib")
    for name in ("Andre_Agassi", "Colin_Powell", "Angelina_Jolie"):
        (tmp_path / name).mkdir()
        for path in sorted(shared_path("data", "lfw_faces", name).glob("*.jpg"))[:4]:
            shutil.copy(path, tmp_path / name / path.name)
    out = invoke(["faces", "load", str(tmp_path), "--cluster", "-q"], database_url)
    assert out.exit_code == 0, out.output
    assert "incremental pass 1 of model dlib (max_distance 0.5000, min_faces 3, neighbours 16)" in out.output
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT array_agg(DISTINCT split_part(i.uri, '/', -2) ORDER BY split_part(i.uri, '/', -2)), count(*) "
            "FROM pgvision.faces f JOIN pgvision.images i USING (image_id) "
            "WHERE f.identity_id IS NOT NULL GROUP BY f.identity_id ORDER BY 1"
        ).fetchall()
    assert rows == [(["Andre_Agassi"], 4), (["Angelina_Jolie"], 4), (["Colin_Powell"], 4)]


def scratch_databases(conninfo):
    with psycopg.connect(conninfo) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgvision_eval_%'")}


@pytest.mark.slow
def test_eval_cluster_scores_real_photos(server_conninfo, tmp_path):
    """12 LFW photos of 3 people: the folder names stay out of the database, the full pass
    with the defaults finds the 3 people, every labelled face placed right."""
    pytest.importorskip("dlib")
    for name in ("Andre_Agassi", "Colin_Powell", "Angelina_Jolie"):
        (tmp_path / name).mkdir()
        for path in sorted(shared_path("data", "lfw_faces", name).glob("*.jpg"))[:4]:
            shutil.copy(path, tmp_path / name / path.name)
    before = scratch_databases(server_conninfo)
    out = CliRunner().invoke(
        main,
        ["eval", "cluster", str(tmp_path), "--json", "-q", "--sweep", "0.3,0.5", "--database-url", server_conninfo],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    scores = result["default"]["scores"]
    assert (result["default"]["pass"]["max_distance"], result["photos"]) == (0.5, 12)
    assert {
        k: scores[k] for k in ("bcubed_precision", "bcubed_recall", "items", "unassigned", "clusters", "labels")
    } == {"bcubed_precision": 1.0, "bcubed_recall": 1.0, "items": 12, "unassigned": 0, "clusters": 3, "labels": 3}
    assert [x["pass"]["max_distance"] for x in result["sweep"]] == [pytest.approx(0.3), 0.5]
    assert scratch_databases(server_conninfo) == before  # the scratch database is dropped
