"""Errors of the reconciliation core."""

from __future__ import annotations


class ReconciliationInputError(ValueError):
    """The inputs contradict each other (e.g. two invoices for one account and period)."""
