"""``{% invoice_flow_for current_tenant finding as flow %}``: the draft-invoice section of a discrepancy page.

A tag rather than a context entry, so the approvals app owns what it shows on the reconciliation
app's page; it reads through the selector like a view would.
"""

from __future__ import annotations

from django import template

from apps.approvals.selectors import InvoiceFlow, invoice_flow
from apps.reconciliation.models import Discrepancy
from apps.tenancy.models import Tenant

register = template.Library()


@register.simple_tag
def invoice_flow_for(tenant: Tenant, finding: Discrepancy) -> InvoiceFlow | None:
    return invoice_flow(tenant, finding)
