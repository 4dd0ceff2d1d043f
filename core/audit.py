"""The audit trail outside the job ledger: who (a key id, or "cli") changed which key, schedule or dataset."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import AuditEvent
from core.types import utcnow


def record_audit(
    session: Session, *, tenant_id: str, actor: str, action: str, object_type: str, object_id: str,
    detail: dict[str, object] | None = None,
) -> None:  # fmt: skip
    session.add(AuditEvent(tenant_id=tenant_id, actor=actor, action=action, object_type=object_type,
                           object_id=object_id, detail=detail, created_at=utcnow()))  # fmt: skip
