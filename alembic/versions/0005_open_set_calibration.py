"""Open-set calibration: calibrations record the FPIR target and the expected FPIR/TPIR.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

``pgvision calibrate`` now chooses the threshold for a target FPIR (share of strangers
accepted as anyone, NIST FRVT 1:N / ISO/IEC 19795-1 open-set terms) by leaving each enrolled
person out in turn (see loader/pgvision/faces/calibrate.py). New columns of
pgvision.calibrations:

- target_fpir: the open-set target (NULL when a per-comparison --target-far chose the threshold);
- expected_fpir / expected_tpir: counted on the gallery's SQL stranger / genuine searches at
  the chosen threshold;
- strangers: how many stranger searches (the smallest measurable FPIR is about 1/strangers);
- method: 'fpir empirical' | 'fpir normal' | 'far empirical' | 'far normal'.

Rates are CHECKed to [0, 1]. Rows stored before this revision keep NULLs. Downgrade drops
the columns (their values are lost).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgvision.calibrations
            ADD COLUMN target_fpir double precision CHECK (target_fpir > 0 AND target_fpir < 1),
            ADD COLUMN expected_fpir double precision CHECK (expected_fpir BETWEEN 0 AND 1),
            ADD COLUMN expected_tpir double precision CHECK (expected_tpir BETWEEN 0 AND 1),
            ADD COLUMN strangers bigint CHECK (strangers >= 0),
            ADD COLUMN method text
        """
    )
    op.execute(
        "COMMENT ON COLUMN pgvision.calibrations.target_fpir IS "
        "'Open-set target: highest share of strangers accepted as anyone "
        "(NULL: a per-comparison target_far chose the threshold)'"
    )
    op.execute("COMMENT ON COLUMN pgvision.calibrations.expected_fpir IS "
               "'Share of leave-one-person-out stranger searches (SQL identify_face) accepted at the threshold'")
    op.execute(
        "COMMENT ON COLUMN pgvision.calibrations.expected_tpir IS "
        "'Share of leave-one-face-out genuine searches with the right identity first and accepted at the threshold'"
    )
    op.execute("COMMENT ON COLUMN pgvision.calibrations.strangers IS "
               "'Stranger searches the expected FPIR rests on (a target FPIR needs >= 3 / target_fpir: rule of three)'")


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgvision.calibrations
            DROP COLUMN method, DROP COLUMN strangers, DROP COLUMN expected_tpir,
            DROP COLUMN expected_fpir, DROP COLUMN target_fpir
        """
    )
