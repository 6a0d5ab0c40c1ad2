"""The sandbox's Stripe, with no HTTP in sight: every endpoint it answers, routed to the rules."""

from __future__ import annotations

import re
from collections.abc import Callable

from .core import API_VERSION, Obj, StripeApiError
from .cycle import StripeCycles

__all__ = ["API_VERSION", "StripeApiError", "StripeState"]


class StripeState(StripeCycles):
    """Every Stripe endpoint the sandbox answers, by method and path."""

    def reset(self) -> None:
        super().reset()
        routes: list[tuple[str, str, Callable[..., Obj]]] = [
            ("GET", "/v1/account", self.account),
            ("POST", "/v1/customers", self.customer_create),
            ("GET", "/v1/customers", self.lister("customer", filters=("email",))),
            ("GET", "/v1/customers/([^/]+)", self.getter("customer")),
            ("POST", "/v1/customers/([^/]+)", self.customer_update),
            ("POST", "/v1/products", self.product_create),
            ("GET", "/v1/products", self.lister("product", filters=("active",))),
            ("GET", "/v1/products/([^/]+)", self.getter("product")),
            ("POST", "/v1/prices", self.price_create),
            ("GET", "/v1/prices", self.price_list),
            ("GET", "/v1/prices/([^/]+)", self.price_get),
            ("POST", "/v1/billing/meters", self.meter_create),
            ("GET", "/v1/billing/meters", self.lister("billing.meter", filters=("status",))),
            ("GET", "/v1/billing/meters/([^/]+)", self.getter("billing.meter")),
            ("GET", "/v1/billing/meters/([^/]+)/event_summaries", self.meter_event_summaries),
            ("POST", "/v1/billing/meter_events", self.meter_event_create),
            ("POST", "/v1/subscriptions", self.subscription_create),
            ("GET", "/v1/subscriptions", self.lister("subscription", filters=("customer", "status"))),
            ("GET", "/v1/subscriptions/([^/]+)", self.getter("subscription")),
            ("POST", "/v1/subscriptions/([^/]+)", self.subscription_update),
            ("POST", "/v1/invoices", self.invoice_create),
            ("POST", "/v1/invoices/create_preview", self.invoice_preview),
            ("GET", "/v1/invoices", self.invoice_list),
            ("GET", "/v1/invoices/([^/]+)", self.getter("invoice")),
            ("POST", "/v1/invoices/([^/]+)", self.invoice_update),
            ("GET", "/v1/invoices/([^/]+)/lines", self.invoice_lines),
            ("POST", "/v1/invoices/([^/]+)/finalize", self.invoice_finalize),
            ("POST", "/v1/invoices/([^/]+)/pay", self.invoice_pay),
            ("POST", "/v1/invoices/([^/]+)/void", self.invoice_void),
            ("POST", "/v1/invoiceitems", self.invoiceitem_create),
            ("GET", "/v1/invoiceitems", self.lister("invoiceitem", filters=("customer", "invoice"))),
            ("GET", "/v1/invoiceitems/([^/]+)", self.getter("invoiceitem")),
            ("POST", "/v1/credit_notes", self.credit_note_create),
            ("GET", "/v1/credit_notes/preview", self.credit_note_preview),
            ("GET", "/v1/credit_notes", self.lister("credit_note", filters=("customer", "invoice"))),
            ("GET", "/v1/credit_notes/([^/]+)", self.getter("credit_note")),
            ("GET", "/v1/events", self.lister("event", filters=("type",))),
            ("GET", "/v1/events/([^/]+)", self.getter("event")),
        ]
        self.routes = [(m, re.compile(f"^{p}$"), f) for m, p, f in routes]
