"""Open-set calibration (target FPIR), leave one person out through SQL identify_face.

Hand-made gallery, model ``line2d`` (2-d, L2), every point on the x axis so that distances
are differences of x; identity distance = min(nearest face, distance to the mean):

    ann: x = 0, 0.2   (mean 0.1)      bob: x = 1, 1.4   (mean 1.2)      cat: x = 3, 3.2 (mean 3.1)

Strangers (the person left out, each of their faces searched against the other two):
    ann out: ann1 (0)   -> bob 1.0 (nearest 1), cat 3.0: best 1.0, margin 2.0
             ann2 (0.2) -> bob 0.8,             cat 2.8: best 0.8, margin 2.0
    bob out: bob1 (1)   -> ann 0.8 (nearest 0.2), cat 2.0: best 0.8, margin 1.2
             bob2 (1.4) -> ann 1.2,             cat 1.6: best 1.2, margin 0.4
    cat out: cat1 (3)   -> bob 1.6 (nearest 1.4), ann 2.8: best 1.6, margin 1.2
             cat2 (3.2) -> bob 1.8,             ann 3.0: best 1.8, margin 1.2
Genuine (leave one face out, full gallery): ann1 0.2, ann2 0.2, bob1 0.4, bob2 0.4, cat1 0.2,
cat2 0.2, all with the right identity first.
Impostor comparisons (each face against each other identity, the rule's distance):
    ann1 bob 1.0 cat 3.0 | ann2 bob 0.8 cat 2.8 | bob1 ann 0.8 cat 2.0 | bob2 ann 1.2 cat 1.6
    cat1 bob 1.6 ann 2.8 | cat2 bob 1.8 ann 3.0:  mean 22.4 / 12 = 1.8667, sample sd 0.8500
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from pgvision.cli import main
from pgvision.faces.calibrate import (
    OpenSetScores,
    calibrate,
    per_comparison_target,
    store_calibration,
    threshold_at_fpir,
    threshold_at_fpir_pooled,
)
from sqlhelpers import add_enrolled_faces

LINE = [("ann1", "ann", 0.0), ("ann2", "ann", 0.2), ("bob1", "bob", 1.0), ("bob2", "bob", 1.4),
        ("cat1", "cat", 3.0), ("cat2", "cat", 3.2)]
STRANGERS = [1.0, 0.8, 0.8, 1.2, 1.6, 1.8]
STRANGER_MARGINS = [2.0, 2.0, 1.2, 0.4, 1.2, 1.2]


@pytest.fixture
def line_gallery(conn):
    return add_enrolled_faces(conn, "line2d", [(key, who, [x, 0.0]) for key, who, x in LINE])


def test_strangers_and_genuine_come_from_sql_with_each_person_left_out(conn, line_gallery):
    before = conn.execute("SELECT face_id, identity_id FROM pgvision.faces ORDER BY face_id").fetchall()
    cal = calibrate(conn, "line2d", target_fpir=0.2, method="empirical")
    s = cal.open_set
    np.testing.assert_allclose(s.stranger_distance, STRANGERS, atol=1e-6)
    np.testing.assert_allclose(s.stranger_margin, STRANGER_MARGINS, atol=1e-6)
    np.testing.assert_allclose(s.genuine_distance, [0.2, 0.2, 0.4, 0.4, 0.2, 0.2], atol=1e-6)
    assert s.genuine_correct.tolist() == [True] * 6
    # nothing of the leave-one-out stays behind
    assert conn.execute("SELECT face_id, identity_id FROM pgvision.faces ORDER BY face_id").fetchall() == before
    # FPIR 0.2 of 6 strangers may accept 1; the two closest tie at 0.8, so none: just under 0.8
    assert cal.threshold < s.stranger_distance.min() and cal.threshold == pytest.approx(0.8, abs=1e-6)
    assert np.float32(cal.threshold) == cal.threshold
    assert (cal.strangers, cal.expected_fpir, cal.expected_tpir) == (6, 0.0, 1.0)
    assert (cal.target_fpir, cal.target_far, cal.method) == (0.2, None, "empirical")


def test_target_fpir_accepts_at_most_that_share_of_strangers(conn, line_gallery):
    cal = calibrate(conn, "line2d", target_fpir=0.34, method="empirical")   # 2 of 6 may pass: under 1.0
    assert cal.threshold < cal.open_set.stranger_distance[0] and cal.threshold == pytest.approx(1.0, abs=1e-6)
    assert cal.expected_fpir == pytest.approx(2 / 6) and cal.expected_tpir == 1.0
    cal = calibrate(conn, "line2d", target_fpir=0.5, method="empirical")    # 3 of 6: under 1.2
    assert cal.threshold == pytest.approx(1.2, abs=1e-6) and cal.expected_fpir == 0.5


def test_target_far_is_kept_per_comparison(conn, line_gallery):
    cal = calibrate(conn, "line2d", target_far=0.1, method="empirical")
    # 12 impostor comparisons (6 faces x 2 other identities); the smallest are ann2-bob and
    # bob1-ann at 0.8: FAR 0.1 may accept 1, the tie accepts none: just under 0.8
    assert cal.impostor_pairs == 12 and cal.threshold == pytest.approx(0.8, abs=1e-6)
    assert (cal.target_fpir, cal.far, cal.expected_fpir) == (None, 0.0, 0.0)


def test_margin_condition_keeps_close_strangers_out_of_the_quantile():
    scores = OpenSetScores(np.array(STRANGERS), np.array(STRANGER_MARGINS), np.array([0.2]), np.array([1.0]),
                           np.array([True]))
    # FPIR 0.5 of 6 accepts 3: without a margin rule, 0.8, 0.8, 1.0: just under 1.2
    assert 1.2 - 1e-6 < threshold_at_fpir(scores, 0.5) < 1.2
    # with min_margin 0.6, bob2 (1.2, margin 0.4) can never be accepted: the 4th is 1.6
    t = threshold_at_fpir(scores, 0.5, min_margin=0.6)
    assert 1.6 - 1e-6 < t < 1.6
    assert scores.rates(t, 0.6) == (0.5, 1.0)
    # every stranger fails the margin: accepting them all still accepts none; the largest finite one
    assert threshold_at_fpir(scores, 0.5, min_margin=5) == pytest.approx(1.8)
    with pytest.raises(ValueError, match=r"^method must be empirical"):
        threshold_at_fpir(scores, 0.05, method="normal")
    with pytest.raises(ValueError, match=r"target FPIR must be between 0 and 1 \(exclusive\), got 1"):
        threshold_at_fpir(scores, 1)


IMPOSTOR = [1.0, 3.0, 0.8, 2.8, 0.8, 2.0, 1.2, 1.6, 1.6, 2.8, 1.8, 3.0]


def test_open_set_target_becomes_a_per_comparison_one_over_n_identities():
    # a stranger meets N identities: FPIR = 1 - (1 - FMR)^N  ->  FMR = 1 - (1 - FPIR)^(1/N)
    assert per_comparison_target(0.01, 1) == pytest.approx(0.01)
    assert per_comparison_target(0.01, 20) == pytest.approx(0.000502, abs=1e-6)
    assert 1 - (1 - per_comparison_target(0.3, 3)) ** 3 == pytest.approx(0.3)
    # FPIR 0.3 over 3 identities: FMR 0.1121, z = -1.2155; 1.8667 - 1.2155 x 0.8500 = 0.8336
    assert threshold_at_fpir_pooled(np.array(IMPOSTOR), 0.3, 3) == pytest.approx(0.8336, abs=1e-3)
    # a quantile below 0 (FPIR 0.01: z = -2.712, 1.8667 - 2.3052 < 0) fails closed at 0
    assert threshold_at_fpir_pooled(np.array(IMPOSTOR), 0.01, 3) == 0.0
    with pytest.raises(ValueError, match=r"identities must be at least 1, got 0"):
        per_comparison_target(0.01, 0)


def test_gaussian_open_set_calibration_pools_every_impostor_comparison(conn, line_gallery):
    cal = calibrate(conn, "line2d", target_fpir=0.3, method="normal")
    assert cal.impostor_pairs == 12 and cal.threshold == pytest.approx(0.8336, abs=1e-3)
    # counted on the SQL searches: the strangers at 0.8 and 0.8 pass (2 of 6), every genuine 0.2 / 0.4 does
    assert (cal.expected_fpir, cal.expected_tpir, cal.method) == (pytest.approx(2 / 6), 1.0, "normal")


def test_support_note_follows_the_rule_of_three(conn, line_gallery):
    cal = calibrate(conn, "line2d", target_fpir=0.2, method="empirical")
    assert cal.support_note() == (
        "a target FPIR of 0.2 needs >= 15 stranger probes (rule of three: 3 / FPIR), this gallery gives 6 from "
        "3 people: enroll about 5 more people (at 2 photos each) to measure it; until then the threshold rests "
        "on few strangers")
    assert calibrate(conn, "line2d", target_fpir=0.5).support_note() is None       # 3 / 0.5 = 6 strangers
    cal = calibrate(conn, "line2d", target_fpir=0.01)      # auto: 0.06 strangers under the target < 10
    assert cal.method == "normal" and cal.support_note().startswith(
        "a target FPIR of 0.01 needs >= 300 stranger probes (rule of three: 3 / FPIR), this gallery gives 6")


def test_store_records_the_open_set_figures(conn, line_gallery):
    cal = calibrate(conn, "line2d", target_fpir=0.34, method="empirical")
    store_calibration(conn, cal)
    row = conn.execute("SELECT target_fpir, expected_fpir, expected_tpir, strangers, method, target_far, threshold "
                       "FROM pgvision.calibrations").fetchone()
    assert row[:6] == (0.34, pytest.approx(2 / 6), 1.0, 6, "fpir empirical", None)
    assert row[6] == pytest.approx(cal.threshold)
    assert conn.execute("SELECT threshold FROM pgvision.models WHERE name = 'line2d'").fetchone()[0] == \
        pytest.approx(cal.threshold)


def test_calibrate_cli_defaults_to_open_set(database_url, conn, line_gallery):
    result = CliRunner().invoke(main, ["calibrate", "--model", "line2d", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "model line2d (l2): 3 identities, 6 gallery faces; 6 genuine, 12 impostor comparisons\n" in result.output
    assert ("open-set: 6 stranger searches (each person left out in turn), 6 genuine searches, "
            "through SQL identify_face\n") in result.output
    assert "note: a target FPIR of 0.01 needs >= 300 stranger probes" in result.output
    # 6 strangers cannot measure 0.01: auto takes the pooled Gaussian, whose quantile is below 0 here: 0, fail closed
    assert "stored: threshold 0.0000 (FPIR 0.01, normal)" in result.output
    assert "expected FPIR 0.0000 (over 6 stranger searches), expected TPIR 0.0000 (FNIR 1.0000)" in result.output
    stored = conn.execute("SELECT target_fpir, strangers, method FROM pgvision.calibrations").fetchone()
    assert stored == (0.01, 6, "fpir normal")


def test_calibrate_quiet_prints_only_the_threshold_line(database_url, conn, line_gallery):
    args = ["calibrate", "--model", "line2d", "--dry-run", "--database-url", database_url]
    full = CliRunner().invoke(main, args)
    quiet = CliRunner().invoke(main, [*args, "--quiet"])
    assert full.exit_code == quiet.exit_code == 0, full.output + quiet.output
    assert len(full.output.splitlines()) > 1
    assert quiet.output.splitlines() == full.output.splitlines()[-1:]
    assert quiet.output.startswith("would store: threshold 0.0000 (FPIR 0.01, normal), min_margin 0.0000; ")


def test_plot_without_matplotlib_names_the_extra(database_url, conn, line_gallery, monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)    # as if it were not installed
    runner = CliRunner()
    result = runner.invoke(main, ["calibrate", "--model", "line2d", "--plot", str(tmp_path / "roc.png"),
                                  "--database-url", database_url])
    assert (result.exit_code, result.output) == (1, "Error: --plot needs matplotlib: pip install 'pgvision[plot]'\n")
    assert conn.execute("SELECT count(*) FROM pgvision.calibrations").fetchone()[0] == 0     # stopped before any work
    result = runner.invoke(main, ["eval", "identify", str(tmp_path), "--plot", str(tmp_path / "t.png"),
                                  "--database-url", database_url])
    assert (result.exit_code, result.output) == (1, "Error: --plot needs matplotlib: pip install 'pgvision[plot]'\n")
