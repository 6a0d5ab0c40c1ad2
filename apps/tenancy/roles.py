"""Roles and the one permission matrix (role-by-action) used by views, APIs and services."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Tenant admin"
    FINANCE_APPROVER = "finance_approver", "Finance approver"
    FINANCE_ANALYST = "finance_analyst", "Finance analyst"
    REVOPS = "revops", "RevOps"
    CSM = "csm", "Customer success"
    VIEWER = "viewer", "Auditor / viewer"


class Action(models.TextChoices):
    VIEW = "view", "See the tenant's data"
    AUDIT_VIEW = "audit.view", "Read the audit log"
    EXPORT = "export", "Export reports and evidence"
    ACCOUNT_EDIT = "account.edit", "Create and edit accounts"
    MEMBER_MANAGE = "member.manage", "Manage members and roles"
    APIKEY_MANAGE = "apikey.manage", "Create and revoke API keys"
    CONNECTION_MANAGE = "connection.manage", "Manage provider connections"
    CATALOG_EDIT = "catalog.edit", "Edit meters, plans, tiers and overrides"
    SETTINGS_EDIT = "settings.edit", "Edit thresholds, routing rules and schedules"
    EVENTS_INGEST = "events.ingest", "Send usage events"
    RUN_START = "run.start", "Start reconciliation runs"
    DISCREPANCY_WORK = "discrepancy.work", "Assign, comment on and dismiss discrepancies"
    NOTE_ADD = "note.add", "Add customer notes"
    CREDIT_PROPOSE = "credit.propose", "Propose a credit note"
    CHARGE_PROPOSE = "charge.propose", "Propose a catch-up charge, write-off or invoice hold"
    PROPOSAL_APPROVE = "proposal.approve", "Approve or reject proposals"
    PERIOD_SIGNOFF = "period.signoff", "Sign off a period"


_READ = {Action.VIEW, Action.AUDIT_VIEW, Action.EXPORT}

MATRIX: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset(
        _READ
        | {
            Action.ACCOUNT_EDIT,
            Action.MEMBER_MANAGE,
            Action.APIKEY_MANAGE,
            Action.CONNECTION_MANAGE,
            Action.EVENTS_INGEST,
            Action.RUN_START,
        }
    ),
    Role.FINANCE_APPROVER: frozenset(
        _READ
        | {
            Action.RUN_START,
            Action.DISCREPANCY_WORK,
            Action.NOTE_ADD,
            Action.CREDIT_PROPOSE,
            Action.CHARGE_PROPOSE,
            Action.PROPOSAL_APPROVE,
            Action.PERIOD_SIGNOFF,
        }
    ),
    Role.FINANCE_ANALYST: frozenset(
        _READ
        | {
            Action.RUN_START,
            Action.DISCREPANCY_WORK,
            Action.NOTE_ADD,
            Action.CREDIT_PROPOSE,
            Action.CHARGE_PROPOSE,
        }
    ),
    Role.REVOPS: frozenset(
        _READ
        | {
            Action.ACCOUNT_EDIT,
            Action.CATALOG_EDIT,
            Action.SETTINGS_EDIT,
            Action.EVENTS_INGEST,
            Action.RUN_START,
            Action.DISCREPANCY_WORK,
            Action.NOTE_ADD,
            Action.CHARGE_PROPOSE,
        }
    ),
    Role.CSM: frozenset({Action.VIEW, Action.EXPORT, Action.NOTE_ADD, Action.CREDIT_PROPOSE}),
    Role.VIEWER: frozenset(_READ),
}


def role_can(role: str, action: str) -> bool:
    return action in MATRIX.get(role, frozenset())
