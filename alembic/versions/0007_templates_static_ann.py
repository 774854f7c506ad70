"""Scale: identity templates with their own index; static, plan-cached ANN statements per model.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

* ``pgvision.identity_templates`` (identity_id, model_id, template, photos): the mean of each
  enrolled identity's gallery embeddings per face model, the template of identify's rule,
  kept in step with faces and face_embeddings by statement-level triggers in the same
  transaction (``_sync_templates.v1``), with an HNSW index per face model
  (``identity_templates_model_<id>_hnsw``) created and dropped with the model.
* ``_identify.v5``: candidates = owners of the nearest gallery faces UNION identities of the
  nearest templates (issue 13, item 3: at 1M faces v4 agreed with the exact rule on 0.960
  of the probes; see the file's header and docs/benchmarks.md "Millions").
* ``_model_ann.v1``: a statement trigger on ``pgvision.models`` that writes
  ``pgvision._ann`` (one static ANN statement per model, plan cached per session) and the
  template indexes; ``search_images.v3`` uses ``_ann`` for unfiltered searches (issue 13,
  item 5: per-call planning of _nearest's dynamic SQL).

Downgrade drops the triggers, ``_ann``, ``_model_ann``, ``_sync_templates`` and the table
(its indexes with it), and re-applies 0006's ``_identify.v4`` and 0003's ``search_images.v2``.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgvision.identity_templates (
            identity_id bigint NOT NULL REFERENCES pgvision.identities ON DELETE CASCADE,
            model_id integer NOT NULL REFERENCES pgvision.models ON DELETE CASCADE,
            template vector NOT NULL,
            photos integer NOT NULL CHECK (photos > 0),
            PRIMARY KEY (identity_id, model_id)
        )
        """
    )
    op.execute("COMMENT ON TABLE pgvision.identity_templates IS "
               "'Mean gallery embedding of each enrolled identity per face model (identify''s template), "
               "maintained by triggers on faces and face_embeddings'")
    op.execute("GRANT SELECT ON pgvision.identity_templates TO pgvision_reader, pgvision_loader")
    # Galleries enrolled before this revision.
    op.execute(
        """
        INSERT INTO pgvision.identity_templates (identity_id, model_id, template, photos)
        SELECT f.identity_id, e.model_id, avg(e.embedding), count(*)
        FROM pgvision.faces f JOIN pgvision.face_embeddings e ON e.face_id = f.face_id
        WHERE f.identity_id IS NOT NULL
        GROUP BY f.identity_id, e.model_id
        """
    )
    apply_sql(op, "functions/_sync_templates.v1.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._sync_templates() FROM PUBLIC")
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(f"CREATE TRIGGER templates_{event.lower()} AFTER {event} ON pgvision.face_embeddings "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION pgvision._sync_templates()")
        if event != "INSERT":  # a new face has no embedding yet
            op.execute(f"CREATE TRIGGER templates_{event.lower()} AFTER {event} ON pgvision.faces "
                       f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION pgvision._sync_templates()")
    for table in ("face_embeddings", "faces"):
        op.execute(f"CREATE TRIGGER templates_truncate AFTER TRUNCATE ON pgvision.{table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION pgvision._sync_templates()")
    apply_sql(op, "functions/_model_ann.v1.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_ann() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER models_ann AFTER INSERT OR DELETE OR UPDATE OF kind, dims, metric, quantization "
        "ON pgvision.models FOR EACH STATEMENT EXECUTE FUNCTION pgvision._model_ann()"
    )
    # A statement trigger fires even when no row changes: this writes _ann for the models
    # registered so far (none on a fresh database) and their template indexes.
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")
    apply_sql(op, "functions/_identify.v5.sql")
    apply_sql(op, "functions/search_images.v3.sql")


def downgrade() -> None:
    apply_sql(op, "functions/search_images.v2.sql")
    apply_sql(op, "functions/_identify.v4.sql")
    op.execute("DROP TRIGGER models_ann ON pgvision.models")
    op.execute("DROP FUNCTION pgvision._ann")
    op.execute("DROP FUNCTION pgvision._model_ann()")
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER templates_{event} ON pgvision.face_embeddings")
        if event != "insert":
            op.execute(f"DROP TRIGGER templates_{event} ON pgvision.faces")
    op.execute("DROP FUNCTION pgvision._sync_templates()")
    op.execute("DROP TABLE pgvision.identity_templates")
