"""``pgvision load`` end to end on a real PostgreSQL: real photos in, searchable rows out.

Covers: the main job on ../shared/data/imagenet_samples; label precision@10 through
``similar_images`` on CIFAR-10; idempotent reruns that decode nothing; bad files skipped by
reason with nothing else lost; SIGKILL mid-run and a lost connection, then a rerun that
loads only the rest; two loaders at once; refusing another model's weights under a name;
``load-vectors`` for .npy and the AnalyticDB text format.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed: these tests need pip install 'pgvision[images]'")

import torch
from PIL import Image

from conftest import shared_path
from pgvision.errors import DatabaseUnreachable, ModelMismatch
from pgvision.ingest.vector_files import VectorFileError, read_vectors
from pgvision.load_images import load_images
from pgvision.load_vectors import load_vectors
from pgvision.models import load_image_model
from pgvision.registry import ModelSpec
from pgvision.server.connection import connect

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
CLI = [sys.executable, "-c", "from pgvision.cli import main; main()"]


@pytest.fixture(scope="module")
def lite0():
    return load_image_model("efficientnet-lite0", device="cpu")


def make_photo_folder(root: Path, per_photo: int, size: int = 96) -> list[Path]:
    """Distinct real-photo JPEGs: crops of the fixture photos, in one folder per photo (label)."""
    out = []
    for photo in ("chelsea_cat", "coffee_cup", "falcon9_rocket"):
        im = Image.open(PHOTOS / f"{photo}.jpg").convert("RGB")
        folder = root / photo
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_photo):
            box = (i * 3, i * 2, 200 + i * 3, 200 + i * 2 - (i % 5))
            path = folder / f"{photo}_{i:03d}.jpg"
            im.crop(box).resize((size, size)).save(path, quality=90)
            out.append(path)
    return out


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM pgvision.{table}").fetchone()[0]  # noqa: S608 (fixed names)


@pytest.mark.slow
def test_main_job_imagenet_samples_load_then_sql_search(database_url, lite0):
    folder = shared_path("data", "imagenet_samples")
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [folder], lite0, batch_size=32, workers=1, label_from="none", progress=False)
        assert (summary.found, summary.loaded, summary.already_present, sum(summary.skipped.values())) == (
            100,
            100,
            0,
            0,
        )
        assert summary.index == f"image_embeddings_model_{summary.model_id}_hnsw"
        assert set(summary.seconds) == {"startup", "hash", "decode", "wait", "embed", "copy", "index", "total"}
        model = conn.execute(
            "SELECT name, kind, dims, metric, normalized, weights_sha256, preprocessing->>'interpolation' "
            "FROM pgvision.models"
        ).fetchone()
        assert model == ("efficientnet-lite0", "image", 1280, "cosine", True, lite0.spec.weights_sha256, "bicubic")
        tench = folder / "n01440764_tench.JPEG"
        row = conn.execute(
            "SELECT image_id, width, height, label, metadata->>'format' FROM pgvision.images WHERE uri = %s",
            (tench.resolve().as_uri(),),
        ).fetchone()
        assert row[1:] == (*Image.open(tench).size, None, "JPEG")
        # The probe, embedded again, finds its own stored image first at distance ~0.
        from pgvector import Vector

        from pgvision.load_images import embed_files

        probe = embed_files(lite0, [tench])[0]
        hits = conn.execute(
            "SELECT image_id, distance FROM pgvision.search_images(%s, 3)", (Vector(probe),)
        ).fetchall()
        assert hits[0][0] == row[0] and hits[0][1] < 1e-4
        # Every stored vector is unit length (cosine model).
        norms = conn.execute(
            "SELECT min(vector_norm(embedding)), max(vector_norm(embedding)) FROM pgvision.image_embeddings"
        ).fetchone()
        assert abs(norms[0] - 1) < 1e-4 and abs(norms[1] - 1) < 1e-4

        rerun = load_images(conn, [folder], lite0, label_from="none", progress=False)
        assert (rerun.loaded, rerun.already_present, rerun.seconds["decode"], rerun.seconds["embed"]) == (
            0,
            100,
            0.0,
            0.0,
        )
        assert count(conn, "images") == 100 and count(conn, "image_embeddings") == 100


#: Images a class for the CIFAR-10 test; PGVISION_CIFAR_PER_CLASS=100 runs the 1,000-image
#: measurement. Floors a few points under what was measured on the same subset.
CIFAR_PER_CLASS = int(os.environ.get("PGVISION_CIFAR_PER_CLASS", "50"))
CIFAR_P10_FLOOR = {50: 0.39, 100: 0.44}.get(CIFAR_PER_CLASS, 0.30)


@pytest.mark.slow
def test_cifar10_label_precision_at_10_through_similar_images(database_url, lite0, tmp_path):
    """Neighbours share the query's class: precision@10 over every stored image.

    Measured here with efficientnet-lite0 features, cosine, HNSW (ef_search 40),
    ``similar_images``: 1,000 images (100 a class, the first by file name): 0.466, the same
    with an exact scan (the issue quotes 0.48); the 500-image subset this test loads (50 a
    class, to keep CI short; 1,000 took ~3 min on a busy 2-core machine): 0.419. The floor
    is a few points under the latter; chance is 0.10. The 1,000-image figure comes from
    ``PGVISION_CIFAR_PER_CLASS=100 python -m pytest tests/test_loader.py -k cifar -s``.
    """
    root = shared_path("data", "cifar10_test")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(classes) == 10
    subset = tmp_path / "cifar"
    for c in classes:
        (subset / c).mkdir(parents=True)
        for f in sorted((root / c).glob("*.jpg"))[:CIFAR_PER_CLASS]:
            (subset / c / f.name).symlink_to(f)
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [subset], lite0, batch_size=64, workers=1, progress=False)
        assert summary.loaded == 10 * CIFAR_PER_CLASS
        p10 = conn.execute(
            """
            SELECT avg(hits.same) FROM pgvision.images q
            CROSS JOIN LATERAL (
                SELECT count(*) FILTER (WHERE s.label = q.label) / 10.0 AS same
                FROM pgvision.similar_images(q.image_id, 10) s
            ) hits
            """
        ).fetchone()[0]
    print(f"label precision@10 on {10 * CIFAR_PER_CLASS} CIFAR-10 images: {float(p10):.3f}")
    assert float(p10) >= CIFAR_P10_FLOOR


def write_bad_and_odd_files(folder: Path) -> dict[str, str]:
    """Unusual and broken files made from a real photo; returns ``{name: expected outcome}``."""
    folder.mkdir(parents=True)
    cat = Image.open(PHOTOS / "chelsea_cat.jpg").convert("RGB")
    data = (PHOTOS / "chelsea_cat.jpg").read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_bytes(b"not an image at all\n" * 10)
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")
    (folder / "bomb.png").write_bytes(buf.getvalue())
    cat.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    Image.fromarray((np.asarray(cat.convert("L"), dtype=np.uint16) * 257).astype("<u2")).save(folder / "gray16.png")
    cat.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    rgba = cat.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    cat.convert("L").save(folder / "gray.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    cat.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif.tobytes())
    cat.save(folder / "cat.webp")
    cat.save(folder / "cat.tiff")
    return {
        "empty.jpg": "empty", "truncated.jpg": "truncated", "notes.png": "not-an-image",
        "bomb.png": "decompression-bomb", "cmyk.jpg": "ok", "gray16.png": "ok", "palette.png": "ok",
        "alpha.png": "ok", "gray.jpg": "ok", "rotated.jpg": "ok", "cat.webp": "ok", "cat.tiff": "ok",
    }


def test_bad_files_are_skipped_by_reason_and_nothing_else_is_lost(database_url, lite0, tmp_path):
    expected = write_bad_and_odd_files(tmp_path / "odd")
    skipped_seen = []
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [tmp_path / "odd"], lite0, batch_size=4, workers=1, progress=False,
                              on_skip=lambda p, r, d: skipped_seen.append((Path(p).name, r)))
        good = sorted(n for n, o in expected.items() if o == "ok")
        assert summary.loaded == len(good) == 8
        assert dict(summary.skipped) == {"empty": 1, "truncated": 1, "not-an-image": 1, "decompression-bomb": 1}
        assert sorted(skipped_seen) == sorted((n, o) for n, o in expected.items() if o != "ok")
        assert re.search(r"loaded 8, already present 0, skipped 4: 1 empty, 1 not-an-image, 1 truncated, "
                         r"1 decompression-bomb", summary.format())
        rows = dict(conn.execute(
            "SELECT substring(uri from '[^/]*$'), format('%s x %s %s', width, height, metadata->>'mode') "
            "FROM pgvision.images"
        ).fetchall())
        assert sorted(rows) == good
        assert rows["rotated.jpg"] == "320 x 213 RGB"  # stored sideways, EXIF says turn: loaded upright
        assert rows["cmyk.jpg"].endswith("CMYK") and rows["palette.png"].endswith(" P")
        # The rotated file, loaded upright, is the nearest neighbour of the plain cat photo.
        nearest = conn.execute(
            "SELECT substring(s.uri from '[^/]*$') FROM pgvision.images q, pgvision.similar_images(q.image_id, 1) s "
            "WHERE q.uri LIKE '%%/cat.tiff'"
        ).fetchone()[0]
        assert nearest in ("rotated.jpg", "cat.webp", "cmyk.jpg")
        # Rerun: the bad files are met again and skipped again; nothing is loaded twice.
        again = load_images(conn, [tmp_path / "odd"], lite0, workers=0, progress=False)
        assert (again.loaded, again.already_present, sum(again.skipped.values())) == (0, 8, 4)


def test_same_bytes_twice_is_one_image(database_url, lite0, tmp_path):
    make_photo_folder(tmp_path / "a", per_photo=2)
    (tmp_path / "a" / "copy.jpg").write_bytes((tmp_path / "a" / "coffee_cup" / "coffee_cup_000.jpg").read_bytes())
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [tmp_path / "a"], lite0, workers=0, progress=False)
        assert (summary.found, summary.loaded, summary.duplicates) == (7, 6, 1)
        labels = conn.execute("SELECT label, count(*) FROM pgvision.images GROUP BY 1 ORDER BY 1").fetchall()
        assert labels == [("chelsea_cat", 2), ("coffee_cup", 2), ("falcon9_rocket", 2)]


def test_lost_connection_keeps_committed_batches_and_rerun_loads_the_rest(database_url, lite0, tmp_path):
    files = make_photo_folder(tmp_path / "p", per_photo=4)
    with connect(database_url, autocommit=True) as admin, connect(database_url, autocommit=True) as conn:
        pid = conn.info.backend_pid

        def kill_backend_after_first_batch(loaded):
            if loaded == 4:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        with pytest.raises(DatabaseUnreachable) as exc:
            load_images(conn, [tmp_path / "p"], lite0, batch_size=4, workers=1, progress=False,
                        on_batch=kill_backend_after_first_batch)
        msg = str(exc.value)
        assert msg.startswith("lost the database connection during the load (")
        assert "4 images of this run are committed and safe, 8 are not loaded yet: rerun the same command" in msg
        assert count(admin, "image_embeddings") == 4
    with connect(database_url, autocommit=True) as conn:
        rerun = load_images(conn, [tmp_path / "p"], lite0, batch_size=4, workers=0, progress=False)
        assert (rerun.loaded, rerun.already_present) == (len(files) - 4, 4)
        assert count(conn, "images") == count(conn, "image_embeddings") == len(files)


def invoke(args, database_url):
    """Run the real CLI in this process (no torch start-up per call)."""
    from click.testing import CliRunner

    from pgvision.cli import main

    return CliRunner().invoke(main, args, env={"DATABASE_URL": database_url}, catch_exceptions=False)


def run_cli(args, database_url, **kw):
    env = dict(os.environ, DATABASE_URL=database_url)
    return subprocess.Popen(CLI + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_committed_and_rerun_loads_only_the_rest(database_url, tmp_path):
    files = make_photo_folder(tmp_path / "p", per_photo=12)
    proc = run_cli(["load", str(tmp_path / "p"), "--batch-size", "2", "--workers", "0", "--threads", "1",
                    "--quiet", "--no-index"], database_url)
    with connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (
                conn.execute("SELECT to_regclass('pgvision.image_embeddings')").fetchone()[0]
                and count(conn, "image_embeddings") >= 4
            ):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        committed = count(conn, "image_embeddings")
        assert 4 <= committed < len(files), f"the loader was not killed mid-run ({committed} of {len(files)} loaded)"
        # Each batch landed whole: no image row without its embedding.
        assert count(conn, "images") == committed
    rerun = invoke(["load", str(tmp_path / "p"), "--quiet"], database_url)
    assert rerun.exit_code == 0, rerun.output
    assert f"loaded {len(files) - committed}, already present {committed}, skipped 0" in rerun.stdout
    with connect(database_url, autocommit=True) as conn:
        assert count(conn, "images") == count(conn, "image_embeddings") == len(files)


@pytest.mark.slow
def test_two_loaders_on_one_folder_store_each_image_once(database_url, tmp_path):
    files = make_photo_folder(tmp_path / "p", per_photo=5)
    with connect(database_url, autocommit=True):
        pass  # the schema exists already (fixture); both loaders register the same model
    args = ["load", str(tmp_path / "p"), "--batch-size", "4", "--workers", "0", "--threads", "1", "--quiet"]
    procs = [run_cli(args, database_url) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    loaded = [int(re.search(r"loaded (\d+), already present (\d+)", out).group(1)) for out, _ in outs]
    present = [int(re.search(r"loaded (\d+), already present (\d+)", out).group(2)) for out, _ in outs]
    assert sum(loaded) == len(files)
    assert [a + b for a, b in zip(loaded, present, strict=True)] == [len(files)] * 2
    with connect(database_url, autocommit=True) as conn:
        assert count(conn, "images") == count(conn, "image_embeddings") == len(files)
        assert conn.execute("SELECT count(*) FROM pgvision.models").fetchone()[0] == 1


def test_other_weights_under_a_registered_name_are_refused_before_any_row(database_url, tmp_path):
    import torchvision

    make_photo_folder(tmp_path / "p", per_photo=2)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"squeeze{seed}.pth")
        torch.save(torchvision.models.squeezenet1_1().state_dict(), paths[-1])
    first = load_image_model("squeezenet1_1", weights=str(paths[0]), device="cpu")
    second = load_image_model("squeezenet1_1", weights=str(paths[1]), device="cpu")
    with connect(database_url, autocommit=True) as conn:
        assert load_images(conn, [tmp_path / "p"], first, workers=0, progress=False).loaded == 6
        with pytest.raises(ModelMismatch, match="model 'squeezenet1_1' is registered with 512-d cosine image vectors"):
            load_images(conn, [tmp_path / "p" / "coffee_cup"], second, workers=0, progress=False)
        assert count(conn, "image_embeddings") == 6


def test_cli_load_with_torchvision_weights_file_logits_and_torchscript(database_url, tmp_path):
    import torchvision

    make_photo_folder(tmp_path / "p", per_photo=2)
    weights = tmp_path / "squeezenet1_1.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), weights)
    script = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                                        torch.nn.Flatten())), str(script))
    for args in (["--model", "squeezenet1_1", "--weights", str(weights), "--output", "logits"],
                 ["--model", f"torchscript:{script}", "--dims", "4", "--metric", "l2"]):
        result = invoke(["load", str(tmp_path / "p"), "--quiet", "--workers", "0", *args], database_url)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("loaded 6, already present 0, skipped 0\n")
    with connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT m.name, m.dims, m.metric, m.normalized, count(e.*) FROM pgvision.models m "
            "JOIN pgvision.image_embeddings e USING (model_id) GROUP BY 1, 2, 3, 4 ORDER BY 1"
        ).fetchall()
    assert rows == [("squeezenet1_1-logits", 1000, "cosine", True, 6), ("torchscript:tiny", 4, "l2", False, 6)]
    result = invoke(["load", str(tmp_path / "p"), "--model", "torchscript:" + str(script), "--dims", "5",
                     "--metric", "l2"], database_url)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: TorchScript model {script} gives 4-d vectors but --dims is 5; pass --dims 4"
    )


def test_load_vectors_npy_and_analyticdb_text_idempotent(database_url, tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 6)).astype(np.float32)
    np.save(tmp_path / "feats.npy", vecs)
    (tmp_path / "feats.ids.txt").write_text("a\nb\nc\nd\ne\n")
    (tmp_path / "feats.labels.txt").write_text("cat\ncat\ndog\n\ndog\n")
    text = tmp_path / "cifar_squeezenet.txt"
    text.write_text("".join(f"{i}|{lab}|{{{','.join(str(v) for v in row)}}}\n"
                            for i, (lab, row) in enumerate(zip(["ship", "ship", "frog"], vecs[:3], strict=True))))
    vs = read_vectors(tmp_path / "feats.npy")
    assert vs.ids == ["a", "b", "c", "d", "e"] and vs.labels == ["cat", "cat", "dog", None, "dog"]
    with connect(database_url, autocommit=True) as conn:
        spec = ModelSpec(name="ext", kind="image", dims=6, metric="cosine", normalized=True)
        assert load_vectors(conn, vs, spec, progress=False).loaded == 5
        assert load_vectors(conn, vs, spec, progress=False).already_present == 5
        stored = conn.execute(
            "SELECT i.metadata->>'external_id', i.label, e.embedding FROM pgvision.images i "
            "JOIN pgvision.image_embeddings e USING (image_id) ORDER BY 1"
        ).fetchall()
        assert [(r[0], r[1]) for r in stored] == list(zip(vs.ids, vs.labels, strict=True))
        np.testing.assert_allclose(stored[0][2].to_numpy(), vecs[0] / np.linalg.norm(vecs[0]), rtol=1e-6)
        # AnalyticDB tutorial text through the CLI, L2 metric, not normalised.
        for _ in range(2):
            result = invoke(["load-vectors", str(text), "--model", "squeezenet-adb", "--metric", "l2", "--quiet"],
                            database_url)
            assert result.exit_code == 0, result.output
        assert result.stdout.startswith("loaded 0, already present 3")
        row = conn.execute(
            "SELECT m.dims, m.metric, m.normalized, i.label, e.embedding FROM pgvision.image_embeddings e "
            "JOIN pgvision.models m USING (model_id) JOIN pgvision.images i USING (image_id) "
            "WHERE m.name = 'squeezenet-adb' AND i.metadata->>'external_id' = '2'"
        ).fetchone()
        assert row[:4] == (6, "l2", False, "frog")
        np.testing.assert_allclose(row[4].to_numpy(), vecs[2], rtol=1e-6)
        with pytest.raises(ModelMismatch):
            load_vectors(conn, vs, ModelSpec(name="ext", kind="image", dims=6, metric="l2"), progress=False)


def test_vector_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1|cat|{1,2,3}\n2|dog|{1,2}\n")
    with pytest.raises(VectorFileError, match=r"bad.txt:2: vector has 2 values but the first line has 3"):
        read_vectors(bad)
    bad.write_text("1|cat|{1,x,3}\n")
    with pytest.raises(VectorFileError, match=r"bad.txt:1: could not convert string to float: 'x'"):
        read_vectors(bad)
    bad.write_text("1,cat,{1,2,3}\n")
    with pytest.raises(VectorFileError, match=r"bad.txt:1: expected 'id\|class\|\{v1,v2,...\}'"):
        read_vectors(bad)
    np.save(tmp_path / "f.npy", np.zeros((3, 2), dtype=np.float32))
    (tmp_path / "f.labels.txt").write_text("a\nb\n")
    with pytest.raises(VectorFileError, match=r"f.labels.txt has 2 entries but .*f.npy has 3 vectors"):
        read_vectors(tmp_path / "f.npy")
    np.save(tmp_path / "n.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(VectorFileError, match=r"row 0 \(id 0\) has NaN or infinite values"):
        read_vectors(tmp_path / "n.npy")
