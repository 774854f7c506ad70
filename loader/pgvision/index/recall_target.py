"""Recall by target: choose a model's ``ef_search`` (HNSW) or ``probes`` (IVFFlat) by measurement.

Users ask for a recall; the knob is ours. :func:`choose_setting` measures recall@k on a
fixed sample of the model's stored vectors for a ladder of settings, smallest first, and
stores the smallest one that reaches the target, with the recall measured and the row
count at the time (``models.ef_search`` / ``probes``, ``target_recall``,
``measured_recall``, ``recall_rows``; ``pgvision.model_stats`` shows them).

Measurement: the ``sample`` stored embeddings with the smallest md5 of their id are the
queries; each one's exact top-k (itself left out) is the truth; an ANN row counts as found
when it is one of those k, or when its full-precision distance ties the k-th exact distance
(relative tolerance :data:`TIE`, float rounding only; :func:`full_precision`: a halfvec
index's own distances are rounded). That is recall@k as a user's benchmark counts it (the
share of the true top-k ids returned), and ``pgvision.recall_at_k`` counts the same way
(migration 0010). Counting as ann-benchmarks does
(ann_benchmarks/plotting/metrics.py: within the k-th exact distance + 1e-3) overstates it: on 1M x 512
clustered unit vectors, where the 10th and 30th nearest differ by less than 1e-3 of
cosine distance, that epsilon counted recall 0.892 at ef_search 40 and 0.955 at 200
while the true share of ids was about 0.75 and 0.90, and the target was "reached" at a
setting whose held-out recall was 0.886 (docs/benchmarks.md section 6).
The ANN rows come from the same unfiltered path as ``search_images`` (k + 1 rows, the
query itself dropped). Unlike calling ``recall_at_k`` once per rung, the exact scans run
once, not once per setting tried: at 1M rows an exact scan is the expensive half.

Re-check rule: a model whose setting was chosen for a target is measured again by
:func:`recheck` (the loaders call it after every load) once it holds more than
:data:`REMEASURE_GROWTH` (50 %) more rows than at the last measurement: HNSW recall at
a fixed ``ef_search`` falls as the graph grows (0.743 at ef_search 40 on 1M x 512 clustered
vectors, docs/benchmarks.md), IVFFlat recall as lists fill. Models with no target get
:data:`DEFAULT_TARGET` after a load or build once they hold :data:`APPLY_FROM_ROWS` rows;
below that, pgvector's defaults already give recall@10 near 1 and a measurement would cost
more than it tells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgvision.errors import InvalidValue
from pgvision.index.ddl import index_exists, stored_rows
from pgvision.registry import embeddings_table, get_model, get_model_by_id

#: Recall@10 applied to models that were given none (the product goal: the default search
#: reaches recall@10 >= 0.95 at 1M rows).
DEFAULT_TARGET = 0.95
#: Rows from which the default target is applied after a load or an index build.
APPLY_FROM_ROWS = 10_000
#: Measure again once the model has this much more rows than at the last measurement.
REMEASURE_GROWTH = 0.5
#: HNSW ef_search values tried, smallest first (pgvector default 40; its maximum 1,000).
HNSW_LADDER = (40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000)
#: Binary-quantized models: their searches re-rank 10 x ef_search Hamming candidates (at most
#: 10,000; sql/functions/_nearest.v4.sql), so the ladder starts lower: 12 (120 candidates) up
#: to 1,000 (10,000). Starting at 40 would re-rank at least 400 candidates: at 100k x 512 that
#: gave recall@10 1.000 at a sixth of raw SQL's QPS (docs/benchmarks.md, section 8).
BINARY_LADDER = (12, 16, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000)
#: Neighbours per query and queries per measurement.
K = 10
SAMPLE = 100
#: Relative tolerance for a tie with the k-th exact distance (float rounding, not nearness).
TIE = 1e-9


@dataclass
class Choice:
    """What :func:`choose_setting` found and stored.

    Attributes:
        model: model name.
        setting: ``ef_search`` (HNSW) or ``probes`` (IVFFlat).
        value: the value stored.
        recall: recall@k measured at that value (0..1).
        target: recall asked for.
        reached: False when even the largest value tried stays below the target (the
            largest one is stored then).
        rows: embeddings stored at the measurement.
        tried: (value, recall) for every rung measured, in order.
    """

    model: str
    setting: str
    value: int
    recall: float
    target: float
    reached: bool
    rows: int
    tried: list[tuple[int, float]]


def ivfflat_ladder(lists: int) -> list[int]:
    """IVFFlat probes tried: sqrt(lists) (pgvector's advice), then doubling, up to ``lists``."""
    first = max(1, round(math.sqrt(lists)))
    out = [first]
    while out[-1] < lists:
        out.append(min(lists, out[-1] * 2))
    return out


def _sample(conn: psycopg.Connection, model: dict[str, Any], sample: int) -> list[tuple[int, Any]]:
    item = "image_id" if model["kind"] == "image" else "face_id"
    return conn.execute(
        sql.SQL("SELECT e.{item}, e.embedding FROM pgvision.{tbl} e WHERE e.model_id = %s "
                "ORDER BY md5(e.{item}::text) LIMIT %s").format(
            item=sql.Identifier(item), tbl=sql.Identifier(embeddings_table(model["kind"]))),
        (model["model_id"], sample),
    ).fetchall()


def _nearest(conn: psycopg.Connection, model_id: int, query, k: int, *, ef_search: int | None = None,
             exact: bool = False) -> list[tuple[int, float]]:
    return conn.execute(
        "SELECT n.item_id, n.distance FROM pgvision.models m, "
        "pgvision._nearest(m, %s, %s, ef_search => %s, exact => %s) n WHERE m.model_id = %s",
        (query, k, ef_search, exact, model_id),
    ).fetchall()


def hits(rows: list[tuple[int, float]], ids: set[int], kth: float) -> int:
    """ANN rows that count as found: one of the exact top-k ``ids``, or a tie with ``kth``.

    Args:
        rows: (item id, distance) returned by the index, the query itself left out.
        ids: the exact top-k ids.
        kth: the k-th exact distance; a row at most :data:`TIE` (relative) beyond it is a
            tie (the same distance up to float rounding), not a near miss.
    """
    return sum(i in ids or d <= kth + TIE * abs(kth) for i, d in rows)


def exact_truth(conn: psycopg.Connection, model: dict[str, Any], probes: list[tuple[int, Any]],
                k: int) -> list[tuple[set[int], float]]:
    """For each probe, (ids of its exact top-k, the k-th exact distance), itself left out.

    Args:
        probes: (item id, embedding) of the sample, as :func:`_sample` returns them.
    """
    truth = []
    for pid, q in probes:
        exact = [(i, d) for i, d in _nearest(conn, model["model_id"], q, k + 1, exact=True) if i != pid][:k]
        truth.append(({i for i, _ in exact}, exact[-1][1]))
    return truth


def measure(conn: psycopg.Connection, model: dict[str, Any], probes: list[tuple[int, Any]],
            truth: list[tuple[set[int], float]], k: int, ef_search: int | None) -> float:
    """Recall@k of the model's index at ``ef_search`` (or its stored probes) on ``probes``.

    Args:
        probes: (item id, embedding) of the sample.
        truth: for each probe, the ids of its exact top-k (itself left out) and the k-th
            exact distance.
    """
    found = 0
    for (pid, q), (ids, kth) in zip(probes, truth, strict=True):
        rows = [(i, d) for i, d in _nearest(conn, model["model_id"], q, k + 1, ef_search=ef_search) if i != pid][:k]
        found += hits(full_precision(conn, model, q, rows), ids, kth)
    return found / (k * len(probes))


_OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}


def full_precision(conn: psycopg.Connection, model: dict[str, Any], query,
                   rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """``rows`` with each distance recomputed at full precision, as the exact scan computes it.

    A halfvec index returns distances between halfvec-rounded vectors (about 1e-3 relative
    error): compared with the exact scan's k-th distance, a row farther than it could pass
    for a tie. Binary and full-precision indexes return full-precision distances already;
    recomputing them changes nothing.

    Args:
        query: the probe (as :func:`_sample` returns embeddings).
        rows: (item id, distance) from the index.

    Returns:
        (item id, full-precision distance), in the order of ``rows``.
    """
    if not rows:
        return rows
    item = "image_id" if model["kind"] == "image" else "face_id"
    exact = dict(conn.execute(
        sql.SQL("SELECT e.{item}, (e.embedding {op} %s::vector)::float8 FROM pgvision.{tbl} e "
                "WHERE e.model_id = %s AND e.{item} = ANY (%s)").format(
            item=sql.Identifier(item), tbl=sql.Identifier(embeddings_table(model["kind"])),
            op=sql.SQL(_OPERATORS[model["metric"]])),
        (query, model["model_id"], [i for i, _ in rows]),
    ).fetchall())
    return [(i, exact[i]) for i, _ in rows]


def choose_setting(conn: psycopg.Connection, model_name: str, target: float = DEFAULT_TARGET, *,
                   k: int = K, sample: int = SAMPLE) -> Choice | None:
    """Store the smallest ``ef_search`` / ``probes`` whose recall@k reaches ``target``.

    Args:
        conn: connection of a role that may update ``pgvision.models``.
        model_name: registered model with a built HNSW or IVFFlat index.
        target: recall@k wanted, in (0, 1].
        k: neighbours per query (default 10).
        sample: stored vectors used as queries (default 100).

    The ladder runs in one transaction: an interrupted run leaves the previous setting.

    Returns:
        The :class:`Choice` stored, or None when there is nothing to choose (method
        ``none``, index not built yet, or fewer than k + 2 rows: :func:`why_not_measured`).

    Raises:
        ValueError: target outside (0, 1].
        pgvision.registry.UnknownModel: unknown model.
    """
    if not 0 < target <= 1:
        raise InvalidValue(f"target recall must be in (0, 1], got {target}: e.g. --target-recall 0.95")
    model = get_model(conn, model_name)
    if model["index_method"] == "none" or not index_exists(conn, model):
        return None
    rows = stored_rows(conn, model)
    if rows < k + 2:
        return None
    # one transaction: an interrupted ladder (Ctrl-C, kill) leaves the previous setting, not a rung's
    with conn.transaction():
        return _climb(conn, model, model_name, target, rows, k, sample)


def _climb(conn: psycopg.Connection, model: dict[str, Any], model_name: str, target: float, rows: int, k: int,
           sample: int) -> Choice:
    probes = _sample(conn, model, sample)
    truth = exact_truth(conn, model, probes, k)
    tried: list[tuple[int, float]] = []
    if model["index_method"] == "hnsw":
        rungs = BINARY_LADDER if model["quantization"] == "binary" else HNSW_LADDER
        setting, ladder = "ef_search", [v for v in rungs if v >= k + 1] or [1000]
    else:
        setting, ladder = "probes", ivfflat_ladder(model["ivfflat_lists"] or 1)
    chosen = None
    for value in ladder:
        if setting == "probes":
            # _nearest reads probes from the model row.
            conn.execute("UPDATE pgvision.models SET probes = %s WHERE model_id = %s", (value, model["model_id"]))
            recall = measure(conn, model, probes, truth, k, None)
        else:
            recall = measure(conn, model, probes, truth, k, value)
        tried.append((value, recall))
        if recall >= target:
            chosen = (value, recall)
            break
    reached = chosen is not None
    value, recall = chosen or tried[-1]
    conn.execute(
        sql.SQL("UPDATE pgvision.models SET {} = %s, target_recall = %s, measured_recall = %s, recall_rows = %s "
                "WHERE model_id = %s").format(sql.Identifier(setting)),
        (value, target, recall, rows, model["model_id"]),
    )
    return Choice(model_name, setting, value, recall, target, reached, rows, tried)


def why_not_measured(conn: psycopg.Connection, model_name: str, k: int = K) -> str:
    """Why :func:`choose_setting` returned None for ``model_name``, as one line for the CLI."""
    model = get_model(conn, model_name)
    if model["index_method"] == "none":
        return f"{model_name}: no ANN index (method none): exact scans have recall 1, nothing to measure"
    if not index_exists(conn, model):
        return f"{model_name}: the index is not built yet (IVFFlat waits for rows): recall not measured"
    rows = stored_rows(conn, model)
    return (f"{model_name}: recall not measured: {rows:,} rows, too few to measure recall@{k} (at least {k + 2}); "
            "exact and ANN results agree at this size, it is measured again after a load")


def recheck(conn: psycopg.Connection, model_id: int) -> Choice | None:
    """After a load: choose again when the rule above says so; return the new choice or None.

    Chooses when the model has a target and grew by more than :data:`REMEASURE_GROWTH`
    since it was measured, or has no target yet and holds :data:`APPLY_FROM_ROWS` rows
    (then with :data:`DEFAULT_TARGET`).
    """
    model = get_model_by_id(conn, model_id)
    if model["index_method"] == "none":
        return None
    rows = stored_rows(conn, model)
    if model["target_recall"] is None:
        if rows < APPLY_FROM_ROWS:
            return None
        return choose_setting(conn, model["name"], DEFAULT_TARGET)
    if rows <= (model["recall_rows"] or 0) * (1 + REMEASURE_GROWTH):
        return None
    return choose_setting(conn, model["name"], float(model["target_recall"]))


def describe(choice: Choice) -> str:
    """One line for the CLI, e.g. ``ef_search 80: recall@10 0.962 >= 0.95 (100k rows)``."""
    steps = ", ".join(f"{v}: {r:.3f}" for v, r in choice.tried)
    if choice.reached:
        return (f"{choice.model}: {choice.setting} {choice.value} reaches recall@10 {choice.recall:.3f} "
                f">= {choice.target} on {choice.rows:,} rows (tried {steps})")
    return (f"{choice.model}: recall@10 {choice.recall:.3f} at {choice.setting} {choice.value}, below the target "
            f"{choice.target} on {choice.rows:,} rows (tried {steps}); rebuild the index denser, beside the old "
            f"one: pgvision db index {choice.model} --rebuild-to-target (or --m 32 --ef-construction 128; "
            "IVFFlat: more --lists)")


__all__ = [
    "Choice",
    "choose_setting",
    "recheck",
    "describe",
    "why_not_measured",
    "measure",
    "exact_truth",
    "hits",
    "ivfflat_ladder",
    "DEFAULT_TARGET",
    "APPLY_FROM_ROWS",
    "REMEASURE_GROWTH",
    "HNSW_LADDER",
    "BINARY_LADDER",
]
