"""Writes of the reports app: exports are recorded in the audit log (who took which figures out)."""

from __future__ import annotations

from apps.audit.services import Actor, audit_record


def report_export_record(*, actor: Actor, report: str, period: str, file_format: str) -> None:
    audit_record(
        actor=actor,
        action="report.export",
        after={"report": report, "period": period, "format": file_format},
    )
