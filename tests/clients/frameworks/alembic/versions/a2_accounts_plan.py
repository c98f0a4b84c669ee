"""accounts.plan"""
import sqlalchemy as sa
from alembic import op

revision = "a2"
down_revision = "a1"


def upgrade():
    op.add_column("accounts", sa.Column("plan", sa.String(20), nullable=True))
    op.create_index("ix_accounts_plan", "accounts", ["plan"])


def downgrade():
    op.drop_index("ix_accounts_plan", "accounts")
    op.drop_column("accounts", "plan")
