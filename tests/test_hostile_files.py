"""Hostile and careless files (issue 8 items 3-6, issue 9 item 4): every one is built here.

A folder can hold anything: a 129-byte PNG that decodes to gigabytes, a link that points
at itself or nowhere, a FIFO or a link to /dev/zero named ``*.jpg``, names that are not
UTF-8 or that carry terminal escape codes. None of them may abort, hang or corrupt a load;
each is skipped with a reason, and the good images beside them are loaded. The CLI runs
in a subprocess (with a timeout) wherever a hang or a missing module is what is tested.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np
import psycopg
import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")

from PIL import Image

from pgvision.ingest.files import FileSkipped, file_uri, read_file, sha256_file
from pgvision.ingest.images import ImageSkipped, decode_image, find_images
from pgvision.text import display, name_text

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "tests" / "fixtures" / "photos"
CLI = [sys.executable, "-c", "from pgvision.cli import main; main()"]
EVIL = "evil\x1b[2J\n.jpg"  # clears the screen when printed raw


def png(path: Path, size: tuple[int, int]) -> Path:
    """A 1-bit black PNG of ``size`` (width, height): a few hundred bytes whatever the size."""
    Image.new("1", size).save(path)
    return path


def symlink(path: Path, target: str | Path) -> Path:
    os.symlink(target, path)
    return path


def fsname(parent: Path, raw: bytes) -> Path:
    """``parent / raw`` for a name given as bytes (not necessarily UTF-8)."""
    return parent / os.fsdecode(raw)


def cli(
    args: list[str], env: dict | None = None, timeout: int = 300, pythonpath: list[Path] = ()
) -> subprocess.CompletedProcess:
    """The real ``pgvision`` command in a fresh interpreter, killed after ``timeout`` s."""
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(REPO / "loader"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        CLI + args, env=env, capture_output=True, timeout=timeout, text=True, errors="surrogateescape"
    )


def hostile_folder(top: Path) -> Path:
    """Three good photos (one in a Latin-1 folder, one with a Latin-1 name) and eight hostile files.

    Good: cats/chelsea_cat.jpg, cats/<r\\xe9sum\\xe9>.jpg (the rocket), <caf\\xe9>/coffee_cup.jpg.
    Hostile, all in cats/: a 16000x1 and a 1,000,000x1 PNG, a link to itself, a link to
    nowhere, a FIFO, a link to /dev/zero, text named ``evil<ESC>[2J<LF>.jpg``, and
    big.jpg of 100,001 bytes (over the 100,000-byte limit the tests set).
    """
    cats = top / "cats"
    cats.mkdir(parents=True)
    shutil.copy(PHOTOS / "chelsea_cat.jpg", cats / "chelsea_cat.jpg")
    shutil.copy(PHOTOS / "falcon9_rocket.jpg", fsname(cats, b"r\xe9sum\xe9.jpg"))
    latin1 = fsname(top, b"caf\xe9")
    latin1.mkdir()
    shutil.copy(PHOTOS / "coffee_cup.jpg", latin1 / "coffee_cup.jpg")
    png(cats / "wide.png", (16_000, 1))
    png(cats / "line.png", (1_000_000, 1))
    symlink(cats / "loop.jpg", "loop.jpg")
    symlink(cats / "broken.jpg", "missing.jpg")
    os.mkfifo(cats / "fifo.jpg")
    symlink(cats / "zero.jpg", "/dev/zero")
    (cats / EVIL).write_text("not a photo\n" * 10)
    (cats / "big.jpg").write_bytes(b"\0" * 100_001)
    return top


HOSTILE_SKIPS = "1 not-an-image, 2 decompression-bomb, 1 broken-link, 1 symlink-loop, 2 not-a-regular-file, 1 too-large"
LIMIT_ENV = {"PGVISION_MAX_FILE_BYTES": "100000"}


# --- decompression by pixel count and aspect ratio (issue 8 item 3) -----------------------


@pytest.mark.parametrize(
    "size, detail",
    [
        ((16_000, 1), "16000x1 px is more elongated than the limit of 100:1"),
        ((1_000_000, 1), "1000000x1 px is more elongated than the limit of 100:1"),
        ((1, 20_000), "1x20000 px is more elongated than the limit of 100:1"),
    ],
)
def test_elongated_png_is_skipped_from_its_header_before_decoding(tmp_path, size, detail):
    data = png(tmp_path / "x.png", size).read_bytes()
    assert len(data) < 5_000  # a few bytes that would resize to gigabytes
    with pytest.raises(ImageSkipped) as exc:
        decode_image(data, draft_size=256)
    assert (exc.value.reason, exc.value.detail) == ("decompression-bomb", detail)


def test_aspect_limit_keeps_panoramas_and_is_a_parameter(tmp_path):
    assert decode_image(png(tmp_path / "p.png", (1000, 10)).read_bytes()).width == 1000  # exactly 100:1
    with pytest.raises(ImageSkipped, match="1000x100 px is more elongated than the limit of 4:1"):
        decode_image(png(tmp_path / "q.png", (1000, 100)).read_bytes(), max_aspect_ratio=4)


def test_not_an_image_names_no_buffer_object():
    with pytest.raises(ImageSkipped) as exc:
        decode_image(b"hello, world\n" * 20)
    assert str(exc.value) == "not-an-image: no image decoder recognises these bytes"


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "TGA", "PCX"])
def test_formats_outside_the_list_are_not_decoded(fmt):
    # EPS would start Ghostscript, a program outside Python, on a file named *.jpg.
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, fmt)
    with pytest.raises(ImageSkipped) as exc:
        decode_image(buf.getvalue())
    assert (exc.value.reason, exc.value.detail) == ("not-an-image", "no image decoder recognises these bytes")


# --- links, non-regular files, size limit (items 4 and 6) ---------------------------------


def test_find_images_skips_loops_broken_links_fifos_devices_and_big_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PGVISION_MAX_FILE_BYTES", "100000")
    top = hostile_folder(tmp_path / "photos")
    (top / "cats" / "sub").mkdir()
    symlink(top / "cats" / "sub" / "up", "..")  # a folder link back up: not followed
    skipped = []
    found = find_images([top], on_skip=lambda *s: skipped.append(s))
    cats = top / "cats"
    assert found == sorted([cats / "chelsea_cat.jpg", fsname(cats, b"r\xe9sum\xe9.jpg"), cats / EVIL,
                            cats / "line.png", cats / "wide.png", fsname(top, b"caf\xe9") / "coffee_cup.jpg"],
                           key=str)
    assert sorted((Path(p).name, reason) for p, reason, _ in skipped) == [
        ("big.jpg", "too-large"),
        ("broken.jpg", "broken-link"),
        ("fifo.jpg", "not-a-regular-file"),
        ("loop.jpg", "symlink-loop"),
        ("zero.jpg", "not-a-regular-file"),
    ]
    details = {Path(p).name: d for p, _, d in skipped}
    assert details["fifo.jpg"] == "a FIFO; only regular files are read"
    assert details["zero.jpg"] == "a character device; only regular files are read"
    assert details["broken.jpg"] == "the link's target missing.jpg does not exist"
    assert (
        details["big.jpg"] == "100001 bytes is over the limit of 100000 bytes (raise it with PGVISION_MAX_FILE_BYTES)"
    )


def test_readers_refuse_a_fifo_without_blocking_and_name_the_file(tmp_path):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    # No writer ever opens it: a blocking open() would hang here forever.
    for reader in (read_file, sha256_file):
        with pytest.raises(FileSkipped) as exc:
            reader(fifo)
        assert str(exc.value) == f"{fifo}: not-a-regular-file: a FIFO; only regular files are read"
    with pytest.raises(FileSkipped, match="too-large: 15169 bytes is over the limit of 1000 bytes"):
        read_file(PHOTOS / "chelsea_cat.jpg", max_bytes=1000)


def test_bad_size_limit_is_one_clear_line(tmp_path, monkeypatch):
    from pgvision.ingest.files import BadLimit

    monkeypatch.setenv("PGVISION_MAX_FILE_BYTES", "10MB")
    with pytest.raises(BadLimit) as exc:
        find_images([PHOTOS])
    assert str(exc.value) == ("PGVISION_MAX_FILE_BYTES='10MB' is not a size in bytes: set it to a positive "
                              "integer (e.g. 268435456) or unset it")


# --- names: lossless, escaped (item 5, control characters) --------------------------------


def test_file_uri_keeps_every_byte_and_labels_are_valid_text(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9/r\xc3\xa9sum\xc3\xa9 #1%.jpg"
    uri = file_uri(os.fsdecode(raw))
    assert uri.isascii() and uri.endswith("/caf%E9/r%C3%A9sum%C3%A9%20%231%25.jpg")
    assert unquote_to_bytes(uri[len("file://"):]) == raw
    assert name_text(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    assert name_text("café") == "café"


def test_display_escapes_control_characters_and_undecodable_bytes():
    assert display("a/evil\x1b[2J\n\r\t\x7f\x9b\u202e.jpg") == "a/evil\\x1b[2J\\x0a\\x0d\\x09\\x7f\\x9b\\u202e.jpg"
    assert display(os.fsdecode(b"caf\xe9/ok.jpg")) == "caf\\xe9/ok.jpg"
    assert display("café\\x.jpg") == "café\\x.jpg"


# --- the loader end to end: skips, loads the rest, never hangs ----------------------------


def image_rows(database_url):
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT uri, label FROM pgvision.images ORDER BY uri").fetchall()


@pytest.mark.slow
def test_load_of_a_hostile_folder_loads_the_good_images_and_reruns_idempotently(database_url, tmp_path):
    top = hostile_folder(tmp_path / "photos")
    env = dict(LIMIT_ENV, DATABASE_URL=database_url)
    args = ["load", str(top), "--workers", "1", "--threads", "1", "--no-index"]
    first = cli(args, env=env)  # the FIFO must not hang it: cli() has a timeout
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == f"loaded 3, already present 0, skipped 8: {HOSTILE_SKIPS}"
    assert EVIL not in first.stderr  # the escape code never reaches the terminal
    # (tqdm.write clears the progress bar with \r before each line: compare the text, not lines)
    assert f"skipped {top / 'cats'}/evil\\x1b[2J\\x0a.jpg: not-an-image (no image decoder recognises these bytes)\n" \
        in first.stderr
    base = file_uri(top)
    assert image_rows(database_url) == [
        (f"{base}/caf%E9/coffee_cup.jpg", "caf\\xe9"),
        (f"{base}/cats/chelsea_cat.jpg", "cats"),
        (f"{base}/cats/r%E9sum%E9.jpg", "cats"),
    ]
    rerun = cli(args + ["--quiet"], env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[0] == f"loaded 0, already present 3, skipped 8: {HOSTILE_SKIPS}"
    assert len(image_rows(database_url)) == 3


@pytest.mark.slow
def test_faces_load_of_a_hostile_folder_stores_non_utf8_names(database_url, tmp_path):
    pytest.importorskip("dlib", reason="faces load needs the faces extra (dlib-bin)")
    top = hostile_folder(tmp_path / "people")
    person = fsname(top, b"Eileen Coll\xefns")
    person.mkdir()
    shutil.copy(PHOTOS / "astronaut_eileen_collins.jpg", fsname(person, b"\xe9ileen.jpg"))
    run = cli(
        ["faces", "load", str(top), "--identity-from", "parent-dir", "--quiet"],
        env=dict(LIMIT_ENV, DATABASE_URL=database_url),
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == (
        "loaded 4 photos, 1 faces (1 new embeddings), enrolled 1, already done 0, skipped 11: "
        "1 not-an-image, 2 decompression-bomb, 1 broken-link, 1 symlink-loop, 2 not-a-regular-file, "
        "1 too-large, 3 no-face"  # the image loader's order of reasons, then the face loader's own
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT i.uri, p.name FROM pgvision.faces f JOIN pgvision.images i USING (image_id) "
            "JOIN pgvision.identities p USING (identity_id)"
        ).fetchall() == [(f"{file_uri(top)}/Eileen%20Coll%EFns/%E9ileen.jpg", "Eileen Coll\\xefns")]
    rerun = cli(["faces", "load", str(top), "--identity-from", "parent-dir", "--quiet"],
                env=dict(LIMIT_ENV, DATABASE_URL=database_url))
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("loaded 0 photos, 0 faces (0 new embeddings), enrolled 0, already done 4,")
    # identify's probe goes through the same checks: one line naming the file.
    probe = top / "cats" / "wide.png"
    run = cli(["identify", str(probe)], env={"DATABASE_URL": database_url}, timeout=120)
    assert (run.returncode, run.stderr) == (
        1,
        f"Error: cannot read the photo: {probe}: decompression-bomb: "
        "16000x1 px is more elongated than the limit of 100:1\n",
    )


# --- the newcomer's edges (issue 9 item 4) ------------------------------------------------


def test_load_of_an_empty_folder_fails_with_a_clear_line_and_registers_nothing(database_url, tmp_path):
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "readme.txt").write_text("no photos here\n")
    run = cli(["load", str(tmp_path / "empty"), "--workers", "0"], env={"DATABASE_URL": database_url})
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"Error: no image files found under {tmp_path / 'empty'} (looked for .bmp, .jpeg, .jpg, .pgm, .png, "
        ".tif, .tiff, .webp): check the path, or name the files themselves"
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgvision.models").fetchone()[0] == 0


def test_faces_load_of_an_empty_folder_fails_the_same_way(database_url, tmp_path):
    pytest.importorskip("dlib", reason="faces load needs the faces extra (dlib-bin)")
    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "empty" / "fifo.jpg")
    run = cli(["faces", "load", str(tmp_path / "empty")], env={"DATABASE_URL": database_url}, timeout=120)
    assert (run.returncode, run.stderr) == (1, (
        f"Error: no image files found under {tmp_path / 'empty'} (looked for .bmp, .jpeg, .jpg, .pgm, .png, "
        ".tif, .tiff, .webp; skipped 1 not-a-regular-file): check the path, or name the files themselves\n"
    ))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgvision.models").fetchone()[0] == 0


def test_search_on_an_empty_database_says_to_load_first(database_url, tmp_path):
    run = cli(["search", str(PHOTOS / "chelsea_cat.jpg")], env={"DATABASE_URL": database_url})
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == ("Error: no image model is loaded yet, so there is nothing to search: "
                          "run pgvision load PATH (or pgvision load-vectors FILE) first\n")


@pytest.mark.slow
def test_search_refuses_hostile_probes_in_one_line_naming_the_file(database_url, tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, 1280, dtype=np.float32))
    assert cli(["load-vectors", str(tmp_path / "v.npy"), "--model", "efficientnet-lite0", "-q"],
               env={"DATABASE_URL": database_url}).returncode == 0
    wide = png(tmp_path / "wide.png", (16_000, 1))
    text = tmp_path / EVIL
    text.write_text("not a photo\n")
    fifo = tmp_path / "probe.jpg"
    os.mkfifo(fifo)
    for probe, why in [
        (wide, "decompression-bomb: 16000x1 px is more elongated than the limit of 100:1"),
        (text, "not-an-image: no image decoder recognises these bytes"),
        (fifo, "not-a-regular-file: a FIFO; only regular files are read"),
    ]:
        run = cli(["search", str(probe)], env={"DATABASE_URL": database_url}, timeout=120)
        assert run.returncode == 1
        assert run.stderr == f"Error: cannot use {display(probe)} as a probe: {why}\n"


@pytest.mark.slow
def test_enroll_of_a_photo_without_a_face_fails(database_url, tmp_path):
    pytest.importorskip("dlib", reason="enroll needs the faces extra (dlib-bin)")
    cup = PHOTOS / "coffee_cup.jpg"
    run = cli(["enroll", "Ann Lee", str(cup), "--quiet"], env={"DATABASE_URL": database_url})
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        f"Error: Ann Lee is not enrolled: no usable face in {cup} (no-face): give photos with one "
        "clear face at least --min-face-px (40) pixels wide"
    )
    again = cli(["enroll", "Ann Lee", str(cup), "--quiet"], env={"DATABASE_URL": database_url})
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1] == (
        "Error: Ann Lee is not enrolled: no face found in the photos given: give photos with one "
        "clear face at least --min-face-px (40) pixels wide"
    )


def blocked_modules(top: Path, *names: str) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import NAME`` fail as if NAME were not installed."""
    for name in names:
        (top / name).mkdir(parents=True)
        (top / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    return top


def test_core_install_runs_db_upgrade_and_load_vectors_without_torch_or_pillow(empty_database_url, tmp_path):
    blocked = blocked_modules(tmp_path / "blocked", "torch", "torchvision", "PIL", "timm", "dlib", "scipy")
    env = {"DATABASE_URL": empty_database_url}
    upgrade = cli(["db", "upgrade"], env=env, pythonpath=[blocked])
    assert upgrade.returncode == 0, upgrade.stderr
    np.save(tmp_path / "v.npy", np.array([[3, 4], [1, 0], [0, 2]], dtype=np.float32))
    run = cli(["load-vectors", str(tmp_path / "v.npy"), "--model", "ext", "-q"], env=env, pythonpath=[blocked])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("loaded 3, already present 0, skipped 0\n")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT embedding::text FROM pgvision.image_embeddings ORDER BY image_id").fetchall() == [
            ("[0.6,0.8]",), ("[1,0]",), ("[0,1]",)
        ]


@pytest.mark.parametrize(
    "args, blocked, message",
    [
        (
            ["load", "PHOTOS"],
            ("torch",),
            "this command needs torch, which is not installed: pip install 'pgvision[images]'",
        ),
        (
            ["search", "PHOTOS/chelsea_cat.jpg"],
            ("PIL",),
            "this command needs Pillow, which is not installed: pip install 'pgvision[images]'",
        ),
        (
            ["enroll", "Ann", "PHOTOS/astronaut_eileen_collins.jpg"],
            ("PIL",),
            "this command needs Pillow, which is not installed: pip install 'pgvision[faces]'",
        ),
        (
            ["enroll", "Ann", "PHOTOS/astronaut_eileen_collins.jpg"],
            ("dlib",),
            "this command needs dlib-bin, which is not installed: pip install 'pgvision[faces]'",
        ),
    ],
)
def test_missing_extra_is_one_line_naming_it(database_url, tmp_path, args, blocked, message):
    if args[0] == "search":  # search checks for a model first
        np.save(tmp_path / "v.npy", np.eye(2, 8, dtype=np.float32))
        assert cli(["load-vectors", str(tmp_path / "v.npy"), "--model", "x", "-q"],
                   env={"DATABASE_URL": database_url}).returncode == 0
    args = [a.replace("PHOTOS", str(PHOTOS)) for a in args]
    run = cli(args, env={"DATABASE_URL": database_url}, pythonpath=[blocked_modules(tmp_path / "b", *blocked)])
    assert (run.returncode, run.stderr) == (1, f"Error: {message}\n")


def test_load_vectors_refuses_a_fifo_and_non_utf8_side_files_in_one_line(database_url, tmp_path):
    from pgvision.ingest.vector_files import VectorFileError, read_vectors

    os.mkfifo(tmp_path / "v.npy")
    run = cli(["load-vectors", str(tmp_path / "v.npy"), "--model", "x"], env={"DATABASE_URL": database_url}, timeout=60)
    assert (run.returncode, run.stderr) == (
        1,
        f"Error: cannot read the vectors file {tmp_path}/v.npy: "
        "not-a-regular-file: a FIFO; only regular files are read\n",
    )
    np.save(tmp_path / "w.npy", np.eye(2, 3, dtype=np.float32))
    (tmp_path / "w.labels.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(VectorFileError, match=r"w\.labels\.txt is not UTF-8 text \(byte 6\): save it as UTF-8$"):
        read_vectors(tmp_path / "w.npy")
    (tmp_path / "t.txt").write_bytes(b"1|ok|{1,2}\n2|caf\xe9|{3,4}\n")
    with pytest.raises(VectorFileError, match=r"t\.txt:2: not UTF-8 text: save the file as UTF-8$"):
        read_vectors(tmp_path / "t.txt")


def _npz(path: Path) -> None:
    np.savez(path.with_suffix(""), a=np.ones((2, 2)))
    path.with_suffix(".npz").rename(path)


# (file name, how it is written, the one-line message after "Error: <dir>/")
VECTOR_FILES = [
    (
        "obj.npy",
        lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "obj.npy holds Python objects, which are never loaded (unpickling runs code): "
        "save a numeric array with numpy.save",
    ),
    ("z.npy", _npz, "z.npy is a .npz archive (no .npy header); save one array with numpy.save"),
    (
        "junk.npy",
        lambda p: p.write_bytes(b"\x80\x04junk"),
        "junk.npy is not a NumPy .npy array (no .npy header); save one array with numpy.save",
    ),
    (
        "c.npy",
        lambda p: np.save(p, np.zeros((2, 4), np.complex64)),
        "c.npy holds complex values; pgvector stores real numbers: save a float32 array",
    ),
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 4), np.float32)), "empty.npy holds no vectors"),
    (
        "d0.npy",
        lambda p: np.save(p, np.zeros((3, 0), np.float32)),
        "d0.npy holds vectors of 0 dimensions; expected an (N, D) array with D >= 1",
    ),
    (
        "wide.npy",
        lambda p: np.save(p, np.zeros((1, 16001), np.float32)),
        "wide.npy holds 16001-dimensional vectors; pgvector's vector type stores at most 16000: "
        "reduce them (e.g. PCA) before loading",
    ),
    (
        "big.npy",
        lambda p: np.save(p, np.array([[1.0, 2.0], [3.0, -1e39]])),
        "big.npy: row 1 (id 1) has the value -1e+39, "
        "beyond float32's range (+-3.40282e+38) that pgvector stores: scale the vectors",
    ),
    (
        "big.txt",
        lambda p: p.write_text("a|cat|{1,2}\nb|dog|{1e39,2}\n"),
        "big.txt: row 1 (id b) has the value 1e+39, "
        "beyond float32's range (+-3.40282e+38) that pgvector stores: scale the vectors",
    ),
    (
        "inf.txt",
        lambda p: p.write_text("a|cat|{1,inf}\n"),
        "inf.txt: row 0 (id a) has NaN or infinite values; pgvector stores finite floats only",
    ),
    (
        "s.npy",
        lambda p: (np.save(p, np.ones((2, 2), np.float32)), np.save(p.with_suffix(".ids.npy"), np.zeros((2, 2)))),
        "s.ids.npy holds a 2-d array; expected one id per row (1-d)",
    ),
]


@pytest.mark.parametrize("name, write, message", VECTOR_FILES, ids=[v[0] for v in VECTOR_FILES])
def test_vector_files_of_every_wrong_kind_are_one_line_errors(tmp_path, name, write, message):
    """Each wrong kind of vectors file is refused before anything is written, naming the file
    (and the row where one row is at fault) and the fix; float64 values past float32's range
    are refused instead of stored as infinities, complex values instead of losing their
    imaginary part, pickles and .npz archives without being opened as such."""
    from pgvision.ingest.vector_files import VectorFileError, read_vectors

    write(tmp_path / name)
    with pytest.raises(VectorFileError) as err:
        read_vectors(tmp_path / name)
    assert str(err.value) == f"{tmp_path}/{message}"


def test_load_vectors_refuses_too_many_dimensions_in_one_line_and_registers_nothing(database_url, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((1, 20000), np.float32))
    run = cli(
        ["load-vectors", str(tmp_path / "wide.npy"), "--model", "too-wide", "-q"],
        env={"DATABASE_URL": database_url},
        timeout=60,
    )
    assert (run.returncode, run.stderr) == (
        1, f"Error: {tmp_path}/wide.npy holds 20000-dimensional vectors; pgvector's vector type stores at most 16000:"
           " reduce them (e.g. PCA) before loading\n")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgvision.models WHERE name = 'too-wide'").fetchone() == (0,)
    np.save(tmp_path / "ints.npy", np.arange(6).reshape(2, 3))  # integers are real numbers: loaded as float32
    run = cli(["load-vectors", str(tmp_path / "ints.npy"), "--model", "ints", "-q"], env={"DATABASE_URL": database_url},
              timeout=60)
    assert run.returncode == 0, run.stderr
    assert "; 2 vectors; " in run.stdout and " vec/s" in run.stdout


def _commands(group, path=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_float_option_refuses_nan_and_infinity():
    """Python's float() reads "nan" and "inf", and click's FloatRange lets NaN through (no
    comparison with NaN is true): a NaN threshold would accept every face, a NaN target make
    a calibration. Every float parameter of every command must be a FiniteFloatRange; one of
    them is run to show the refusal is one line naming the option, before any work."""
    import click
    from click.testing import CliRunner

    from pgvision.cli import main
    from pgvision.cli.options import FiniteFloatRange

    floats = {f"{' '.join(path)} --{p.name}": p.type for path, command in _commands(main) for p in command.params
              if isinstance(p.type, (click.types.FloatParamType, click.FloatRange))}
    assert len(floats) >= 10, floats  # threshold, min-margin, target-fpir/far, margin-frr (x2), target-recall, ...
    assert [name for name, kind in floats.items() if not isinstance(kind, FiniteFloatRange)] == []
    for value in ("nan", "inf", "-inf"):
        result = CliRunner().invoke(main, ["db", "index", "some-model", "--target-recall", value])
        assert result.exit_code == 2
        assert (
            result.output.splitlines()[-1]
            == f"Error: Invalid value for '--target-recall': {value!r} is not a finite number."
        )
    result = CliRunner().invoke(main, ["identify", "--threshold", "NaN", "x.jpg"])
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--threshold': 'NaN' is not a finite number."


def test_identity_names_are_checked_before_any_work_and_printed_escaped(database_url):
    """An empty name was taken for "no identity" (the photo loaded, nobody enrolled, and the
    error blamed the photo); a 5,000-character one was echoed whole. Both are refused before
    anything is read. A name with terminal escapes (a folder name through --identity-from
    parent-dir, or typed) is stored as given but printed escaped by enroll and identify, as
    are labels in search's table."""
    from click.testing import CliRunner

    from pgvision.cli import main
    from pgvision.cli.search import format_table

    photo = str(PHOTOS / "astronaut_eileen_collins.jpg")
    db = ["--database-url", database_url]
    runner = CliRunner()
    for name, shown in [("", "got 0 ('')"), ("x" * 5000, f"got 5000 ('{'x' * 40}...')")]:
        result = runner.invoke(main, ["enroll", name, photo, "-q", *db])
        assert result.exit_code == 1
        assert (
            result.output
            == f"Error: an identity name must be 1 to 200 characters, {shown}: give a shorter, non-empty name\n"
        )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM pgvision.identities), (SELECT count(*) FROM pgvision.faces)"
                            ).fetchone() == (0, 0)
    evil = "Eve\x1b[2J\x07"
    result = runner.invoke(main, ["enroll", evil, photo, "-q", *db])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "Eve\\x1b[2J\\x07: 1 gallery faces for model dlib"
    result = runner.invoke(main, ["identify", photo, *db])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("face 0 box ") and ": Eve\\x1b[2J\\x07; distance 0.0000" in result.stdout
    assert "\x1b" not in result.output and "\x07" not in result.output
    table = format_table([{"image_id": 1, "distance": 0.1, "similarity": 0.9, "label": EVIL, "uri": "file:///x"}])
    assert "evil\\x1b[2J\\x0a.jpg" in table and "\x1b" not in table


def test_a_folder_name_no_identity_can_take_skips_its_photos_only(database_url, tmp_path):
    """--identity-from parent-dir with a folder named by 230 characters: the load used to stop
    there with an error, and every rerun again; now its photos are skipped with a reason and
    the other folders enroll."""
    from click.testing import CliRunner

    from pgvision.cli import main

    long_name = "L" * 230
    for folder, angle in [("Ann", 0), (long_name, 3)]:
        (tmp_path / "people" / folder).mkdir(parents=True)
        Image.open(PHOTOS / "astronaut_eileen_collins.jpg").rotate(angle).save(tmp_path / "people" / folder / "p.jpg")
    result = CliRunner().invoke(main, ["faces", "load", str(tmp_path / "people"), "--identity-from", "parent-dir", "-q",
                                       "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("loaded 1 photos, 1 faces (1 new embeddings), enrolled 1, already done 0, "
                                    "skipped 1: 1 identity-name\n")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT name FROM pgvision.identities").fetchall() == [("Ann",)]


class _RunsCode:
    """Unpickling this runs ``touch``: what a hostile "checkpoint" does to a plain torch.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weights_files(tmp_path: Path) -> dict[str, Path]:
    import pickle

    import torch

    files = {}
    files["text"] = tmp_path / "notes.pth"
    files["text"].write_text("not weights\n")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    files["tensor"] = tmp_path / "tensor.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "checkpoint.pth")
    files["checkpoint"] = tmp_path / "checkpoint.pth"
    files["truncated"] = tmp_path / "truncated.pth"
    files["truncated"].write_bytes(files["tensor"].read_bytes()[:200])
    files["code"] = tmp_path / "code.pth"
    files["code"].write_bytes(pickle.dumps(_RunsCode(tmp_path / "RAN")))
    return files


def test_weights_files_that_are_not_state_dicts_are_one_line_and_never_run_code(tmp_path):
    """Each is refused in one line naming the file and the fix (the exception's name, which
    depends on torch's version and the bytes, in parentheses); the pickled object is never
    unpickled, so its code never runs."""
    import re

    pytest.importorskip("torch", reason="weights files need torch (pip install 'pgvision[images]')")
    from pgvision.models import ModelUnavailable, load_state_dict_file

    fix = re.escape(": pass the .pth that torch.save(model.state_dict()) wrote")
    files = _weights_files(tmp_path)
    unreadable = r"is not a PyTorch state_dict for resnet18 \(\w+\)"
    expected = {
        "text": unreadable,
        "tensor": re.escape("holds a Tensor, not a state_dict of tensors for resnet18"),
        "checkpoint": re.escape(
            "holds a dict of non-tensors (a checkpoint?), not a state_dict of tensors for resnet18"
        ),
        "truncated": unreadable,
        "code": unreadable,
    }
    for kind, path in files.items():
        with pytest.raises(ModelUnavailable) as err:
            load_state_dict_file(path, "resnet18")
        assert re.fullmatch(f"weights file {re.escape(str(path))} {expected[kind]}{fix}", str(err.value)), (
            kind,
            str(err.value),
        )
    assert not (tmp_path / "RAN").exists()
    run = cli(["load", str(PHOTOS), "--model", "resnet18", "--weights", str(files["code"]), "-q"],
              env={"DATABASE_URL": "postgresql://nobody@/none?host=/nonexistent"}, timeout=120)
    assert run.returncode == 1
    assert re.fullmatch(f"Error: weights file {re.escape(str(files['code']))} {unreadable}{fix}\n", run.stderr), (
        run.stderr
    )
    assert not (tmp_path / "RAN").exists()
