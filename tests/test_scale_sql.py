"""Scale (issue 13) on small data: identify's plan without statistics, its agreement with the
exact rule on a gallery of look-alikes, and search settings chosen by a recall target."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pgvision import indexes, recall_target
from pgvision.registry import get_model
from sqlhelpers import add_gallery, add_images, clustered, families


def exact_rule(photos, who, q):
    """identify's rule computed exactly: min(nearest photo, mean of photos) per person, best first."""
    d = np.linalg.norm(photos - q, axis=1)
    n = int(who.max()) + 1
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, who, d)
    means = np.zeros((n, photos.shape[1]))
    np.add.at(means, who, photos)
    means /= np.bincount(who, minlength=n)[:, None]
    return np.argsort(np.minimum(nearest, np.linalg.norm(means - q, axis=1)), kind="stable")


def nested_plans(conn, statement, params):
    """Plans of every statement run inside ``statement`` (auto_explain, nested, as notices)."""
    plans = []
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    conn.add_notice_handler(lambda d: plans.append(d.message_primary))
    conn.execute(statement, params).fetchall()
    conn.execute("SET auto_explain.log_min_duration = -1")
    return "\n".join(plans)


def test_identify_walks_the_index_before_statistics_exist(conn):
    # 3,000 photos, never analyzed (as right after a bulk load): the planner guesses 0.5 % of
    # the rows for model_id = 1, i.e. 15, fewer than the 200 nearest faces identify asks for.
    # v2 then sorted the whole model by an exact scan (a Sort on the distance, and a hash
    # join to average each candidate's photos); v4 walks the HNSW index and probes keys.
    conn.execute("ALTER TABLE pgvision.face_embeddings SET (autovacuum_enabled = false)")
    conn.execute("ALTER TABLE pgvision.faces SET (autovacuum_enabled = false)")
    photos, who, _ = families(300, 32, seed=1)
    photos, who = photos[:3000], who[:3000]
    model_id, _ = add_gallery(conn, "faces32", photos, who)
    # the index DDL alone: indexes.ensure_index runs ANALYZE after a build, an index made by
    # hand (or by a bulk load that stopped before it) does not
    conn.execute(indexes.index_ddl(indexes.get_model_by_id(conn, model_id), concurrently=False))
    assert conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'pgvision.face_embeddings'::regclass"
                        ).fetchone()[0] == -1  # no statistics
    plans = nested_plans(conn, "SELECT * FROM pgvision.identify(%s, 'faces32')", (photos[7],))
    assert f"Index Scan using face_embeddings_model_{model_id}_hnsw" in plans
    assert not re.search(r"Sort Key: \(+\(?e\.embedding\)?::", plans)
    assert "Seq Scan on face_embeddings" not in plans


def test_identify_agrees_with_the_exact_rule_among_look_alikes(conn):
    # 60 people in families of 5 look-alikes, 1..19 photos each; probes are new photos.
    photos, who, people = families(60, 16, seed=2)
    _, ident = add_gallery(conn, "faces16", photos, who)
    rng = np.random.default_rng(3)
    probes = people[rng.integers(0, 60, 40)] + 0.25 * rng.standard_normal((40, 16)) / 4
    probes = (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)
    for q in probes:
        rows = conn.execute("SELECT identity_id FROM pgvision.identify(%s, 'faces16', candidates => 3)",
                            (q,)).fetchall()
        assert [r[0] for r in rows] == ident[exact_rule(photos, who, q)[:3]].tolist()


def test_target_recall_stores_the_smallest_setting_that_reaches_it(conn):
    add_images(conn, "ivf", [(f"v{i}", None, v) for i, v in enumerate(clustered(2000, 8, 20, seed=4))])
    indexes.set_index(conn, "ivf", method="ivfflat", lists=16)
    # probes tried: sqrt(16) = 4, 8, 16 (all lists: an exact answer, recall 1).
    assert recall_target.ivfflat_ladder(16) == [4, 8, 16]
    choice = recall_target.choose_setting(conn, "ivf", 1.0)
    assert choice.reached and choice.recall == 1.0 and choice.rows == 2000
    assert [v for v, _ in choice.tried] == [4, 8, 16][: len(choice.tried)]
    assert all(r < 1.0 for _, r in choice.tried[:-1])
    stats = conn.execute("SELECT probes, target_recall, measured_recall, recall_rows "
                         "FROM pgvision.model_stats WHERE model = 'ivf'").fetchone()
    assert stats == (choice.value, 1.0, 1.0, 2000)


def test_hnsw_target_recall_on_easy_data_keeps_the_default(conn):
    add_images(conn, "small", [(f"v{i}", None, v) for i, v in enumerate(clustered(500, 8, 10, seed=5))])
    indexes.ensure_index(conn, get_model(conn, "small")["model_id"])
    choice = recall_target.choose_setting(conn, "small", 0.9)
    assert (choice.setting, choice.value, choice.reached) == ("ef_search", 40, True)
    assert choice.tried == [(40, choice.recall)] and choice.recall >= 0.9
    assert conn.execute("SELECT ef_search, target_recall::numeric(3,2)::text, recall_rows FROM pgvision.models "
                        "WHERE name = 'small'").fetchone() == (40, "0.90", 500)


def test_target_recall_is_checked_again_when_the_model_grows_by_half(conn):
    vecs = clustered(1300, 8, 10, seed=6)
    add_images(conn, "grow", [(f"v{i}", None, v) for i, v in enumerate(vecs[:1000])])
    model_id = get_model(conn, "grow")["model_id"]
    indexes.ensure_index(conn, model_id)
    assert recall_target.recheck(conn, model_id) is None  # no target and < 10,000 rows
    recall_target.choose_setting(conn, "grow", 0.9)
    conn.execute("DELETE FROM pgvision.images")  # add_images numbers from scratch: reload all
    add_images(conn, "grow", [(f"v{i}", None, v) for i, v in enumerate(vecs[:1500])])
    assert recall_target.recheck(conn, model_id) is None  # 1,500 = 1,000 + 50 %: not more
    conn.execute("DELETE FROM pgvision.images")
    add_images(conn, "grow", [(f"v{i}", None, v) for i, v in enumerate(np.vstack([vecs, vecs[:201] + 0.01]))])
    again = recall_target.recheck(conn, model_id)
    assert again is not None and again.rows == 1501 and again.target == pytest.approx(0.9)


def test_target_recall_out_of_range_says_what_to_pass(conn):
    add_images(conn, "tiny", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    with pytest.raises(ValueError, match=r"^target recall must be in \(0, 1\], got 1.5: e.g. --target-recall 0.95$"):
        recall_target.choose_setting(conn, "tiny", 1.5)


@pytest.mark.parametrize("quantization, expression", [
    ("halfvec", "((embedding)::halfvec(8)) halfvec_cosine_ops"),
    ("binary", "((binary_quantize((embedding)::vector(8)))::bit(8)) bit_hamming_ops"),
])
def test_quantized_index_is_built_and_searched(conn, quantization, expression):
    vecs = clustered(400, 8, 8, seed=7)
    add_images(conn, "q8", [(f"v{i}", None, v) for i, v in enumerate(vecs)], metric="cosine")
    name = indexes.set_index(conn, "q8", quantization=quantization)
    definition, quant = conn.execute("SELECT index_definition, quantization FROM pgvision.model_stats "
                                     "WHERE model = 'q8'").fetchone()
    assert quant == quantization
    assert definition.endswith(f"USING hnsw ({expression}) WITH (m='16', ef_construction='64') WHERE (model_id = 1)")
    plans = nested_plans(conn, "SELECT * FROM pgvision.search_images(%s, 5, 'q8')", (vecs[3],))
    assert f"Index Scan using {name}" in plans


def test_binary_index_reranks_to_the_exact_order(conn):
    # 8 dims quantize to at most 256 codes, so Hamming order alone is mostly ties; with
    # ef_search 1000 >= 400 rows every row is a candidate and the full-precision re-ranking
    # must give exactly numpy's order.
    vecs = clustered(400, 8, 8, seed=8)
    ids = add_images(conn, "b8", [(f"v{i}", None, v) for i, v in enumerate(vecs)], metric="cosine")
    indexes.set_index(conn, "b8", quantization="binary")
    q = vecs[11] + 0.05
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    expected = [ids[f"v{i}"] for i in np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:5]]
    rows = conn.execute("SELECT image_id FROM pgvision.search_images(%s, 5, 'b8', ef_search => 1000)",
                        (q,)).fetchall()
    assert [r[0] for r in rows] == expected


def test_unknown_quantization_says_what_to_use(conn):
    add_images(conn, "tiny", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    with pytest.raises(ValueError, match=r"^unknown quantization 'pq': use one of none, halfvec, binary$"):
        indexes.set_index(conn, "tiny", quantization="pq")


def test_db_index_target_recall_reports_the_choice(database_url, conn):
    from click.testing import CliRunner

    from pgvision.cli import main

    add_images(conn, "small", [(f"v{i}", None, v) for i, v in enumerate(clustered(500, 8, 10, seed=5))])
    out = CliRunner().invoke(main, ["db", "index", "small", "--quantization", "halfvec", "--target-recall", "0.9",
                                    "--quiet", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert re.fullmatch(r"small: image_embeddings_model_1_hnsw, \d+\.\d MB, built in \d+\.\d s", lines[0]), lines
    assert re.fullmatch(r"small: ef_search 40 reaches recall@10 (0\.9\d\d|1\.000) >= 0\.9 on 500 rows "
                        r"\(tried 40: (0\.9\d\d|1\.000)\)", lines[1])
    assert conn.execute("SELECT quantization, ef_search, target_recall::text FROM pgvision.model_stats").fetchone() == (
        "halfvec", 40, "0.9")
