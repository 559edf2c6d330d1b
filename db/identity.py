"""The deployment id: one random id per database, so messages can say which data they mean."""

from __future__ import annotations

import uuid

from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.models import Deployment


def read_deployment_id(session: Session) -> str | None:
    """This database's id; None before the migrations ran (nothing is created here)."""
    try:
        if not inspect(session.get_bind()).has_table(Deployment.__tablename__):
            return None
        return session.scalars(select(Deployment.id).order_by(Deployment.created_at)).first()
    except SQLAlchemyError:
        return None


def ensure_deployment_id(session: Session) -> str:
    """This database's id, created when the row is missing (migration 0007 normally makes it)."""
    found = read_deployment_id(session)
    if found is not None:
        return found
    row = Deployment(id=str(uuid.uuid4()))
    session.add(row)
    session.flush()
    return row.id
