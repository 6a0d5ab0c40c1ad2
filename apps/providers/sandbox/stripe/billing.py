"""Invoices (priced from the sandbox's own prices and meter events), invoice items and credit notes."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from .catalog import StripeCatalog
from .core import (
    Obj,
    Params,
    StripeApiError,
    _bool,
    _dec,
    _int,
    _missing,
    _num,
    _round_minor,
    price_amount,
)
from .shapes import SHAPES


class StripeBilling(StripeCatalog):
    # --- invoices ----------------------------------------------------------------
    def _line(
        self,
        invoice_id: str,
        *,
        amount: int,
        currency: str,
        quantity: Decimal,
        description: str,
        period: tuple[int, int],
        price: Obj | None,
        parent: Obj,
    ) -> Obj:
        line = self.new(
            "line_item",
            "il",
            amount=amount,
            currency=currency,
            description=description,
            invoice=invoice_id,
            quantity=_num(quantity),
            period={"start": period[0], "end": period[1]},
            parent=parent,
            subtotal=amount,
            subscription=None,
        )
        line.pop("created")
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]} if price else None,
            "unit_amount_decimal": price["unit_amount_decimal"] if price else str(amount),
        }
        return line

    def _subscription_lines(self, invoice_id: str, sub: Obj) -> list[Obj]:
        lines = []
        for si_ref in sub["items"]["data"]:
            si = self.get("subscription_item", si_ref["id"])
            price = self.get("price", si["price"]["id"])
            period = (si["current_period_start"], si["current_period_end"])
            meter = price["recurring"]["meter"]
            if meter:
                quantity = self.meter_total(meter, sub["customer"], *period)
            else:
                quantity = Decimal(si["quantity"] or 0)
            product = self.get("product", price["product"])
            lines.append(
                self._line(
                    invoice_id,
                    amount=price_amount(price, quantity),
                    currency=price["currency"],
                    quantity=quantity,
                    description=f"{_num(quantity)} x {product['name']}",
                    period=period,
                    price=price,
                    parent={
                        "type": "subscription_item_details",
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": sub["id"],
                            "subscription_item": si["id"],
                        },
                    },
                )
            )
        return lines

    def _item_line(self, invoice_id: str, item: Obj) -> Obj:
        price = self.get("price", item["_price"]) if item.get("_price") else None
        sub = (
            (item["parent"] or {}).get("subscription_details", {}).get("subscription")
            if item["parent"]
            else None
        )
        return self._line(
            invoice_id,
            amount=item["amount"],
            currency=item["currency"],
            quantity=Decimal(item["quantity"]),
            description=item["description"] or "",
            period=(item["period"]["start"], item["period"]["end"]),
            price=price,
            parent={
                "type": "invoice_item_details",
                "subscription_item_details": None,
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": sub,
                },
            },
        )

    def _build_invoice(self, params: Params, *, preview: bool) -> tuple[Obj, list[Obj]]:
        customer = self.get("customer", params.get("customer") or "")
        sub = self.get("subscription", params["subscription"]) if params.get("subscription") else None
        if sub and sub["customer"] != customer["id"]:
            raise StripeApiError("The subscription belongs to another customer.", param="subscription")
        invoice = self.new(
            "invoice",
            "upcoming_in" if preview else "in",
            customer=customer["id"],
            status="draft",
            currency=(sub or {}).get("currency") or customer["currency"] or params.get("currency", "usd"),
            auto_advance=_bool(params.get("auto_advance", False)),
            description=params.get("description"),
            metadata=dict(params.get("metadata") or {}),
            billing_reason="subscription_cycle" if sub else "manual",
            customer_email=customer["email"],
            customer_name=customer["name"],
            number=None,
            due_date=None,
            effective_at=None,
            webhooks_delivered_at=None,
            next_payment_attempt=None,
            latest_revision=None,
            amount_paid=0,
            post_payment_credit_notes_amount=0,
            pre_payment_credit_notes_amount=0,
            status_transitions={
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            parent=None
            if sub is None
            else {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": sub["id"]},
            },
        )
        if preview:
            invoice["id"] = f"upcoming_in_{uuid.uuid4().hex[:16]}"
        lines = self._subscription_lines(invoice["id"], sub) if sub else []
        include = sub is not None or params.get("pending_invoice_items_behavior") == "include"
        pending = [
            it
            for it in self.objects.get("invoiceitem", {}).values()
            if include
            and it["customer"] == customer["id"]
            and it["invoice"] is None
            and it["currency"] == invoice["currency"]
        ]
        lines += [self._item_line(invoice["id"], it) for it in pending]
        for i, extra in enumerate(params.get("invoice_items") or [] if preview else []):
            amount = _int(extra.get("amount", 0), f"invoice_items[{i}][amount]")
            lines.append(
                self._line(
                    invoice["id"],
                    amount=amount,
                    currency=invoice["currency"],
                    quantity=Decimal(1),
                    description=extra.get("description", ""),
                    period=(self.now(), self.now()),
                    price=None,
                    parent={"type": "invoice_item_details"},
                )
            )
        periods = [ln["period"] for ln in lines if ln["parent"].get("type") == "subscription_item_details"]
        invoice["period_start"] = min((p["start"] for p in periods), default=invoice["created"])
        invoice["period_end"] = max((p["end"] for p in periods), default=invoice["created"])
        invoice["_lines"] = lines
        self._totals(invoice)
        return invoice, pending

    def _totals(self, invoice: Obj) -> None:
        total = sum(line["amount"] for line in invoice["_lines"])
        credited = invoice["pre_payment_credit_notes_amount"]
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=max(total - credited, 0),
            total_discount_amounts=[],
            total_taxes=[],
            lines={
                "object": "list",
                "data": [copy.deepcopy(x) for x in invoice["_lines"][:10]],
                "has_more": len(invoice["_lines"]) > 10,
                "url": f"/v1/invoices/{invoice['id']}/lines",
            },
        )
        invoice["amount_remaining"] = max(invoice["amount_due"] - invoice["amount_paid"], 0)

    def invoice_create(self, params: Params) -> Obj:
        invoice, pending = self._build_invoice(params, preview=False)
        for item in pending:
            item["invoice"] = invoice["id"]
        self.store(invoice, "invoice.created")
        return self.public(invoice)

    def invoice_preview(self, params: Params) -> Obj:
        return self.public(self._build_invoice(params, preview=True)[0])

    def invoice_list(self, params: Params) -> Obj:
        page = self.lister("invoice", filters=("customer", "status"))(
            {k: v for k, v in params.items() if k != "subscription"}
        )
        if sub := params.get("subscription"):  # filtering after paging is wrong in general; fine for a filter
            page["data"] = [
                i
                for i in page["data"]
                if ((i["parent"] or {}).get("subscription_details") or {}).get("subscription") == sub
            ]
        return page

    def invoice_lines(self, params: Params, oid: str) -> Obj:
        invoice = self.get("invoice", oid)
        lines = [dict(ln, _seq=-i) for i, ln in enumerate(invoice["_lines"])]
        return self.page(lines, params, f"/v1/invoices/{oid}/lines")

    def invoice_update(self, params: Params, oid: str) -> Obj:
        invoice = self.get("invoice", oid)
        if invoice["status"] != "draft" and set(params) - {"auto_advance", "metadata", "expand"}:
            raise StripeApiError(
                "You can only update these fields on a finalized invoice: auto_advance, metadata.",
                code="invoice_not_editable",
            )
        if "auto_advance" in params:
            invoice["auto_advance"] = _bool(params["auto_advance"])
        if "description" in params:
            invoice["description"] = params["description"]
        invoice["metadata"].update(params.get("metadata") or {})
        self.emit("invoice.updated", invoice)
        return self.public(invoice)

    def invoice_finalize(self, params: Params, oid: str) -> Obj:
        invoice = self.get("invoice", oid)
        if invoice["status"] != "draft":
            raise StripeApiError("This invoice is already finalized.", code="invoice_not_editable")
        customer = self.get("customer", invoice["customer"])
        invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
        customer["next_invoice_sequence"] += 1
        now = self.now()
        invoice["status_transitions"]["finalized_at"] = now
        invoice["effective_at"] = now
        if "auto_advance" in params:
            invoice["auto_advance"] = _bool(params["auto_advance"])
        invoice["status"] = "open"
        self.emit("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self._mark_paid(invoice)
        return self.public(invoice)

    def _mark_paid(self, invoice: Obj) -> None:
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = self.now()
        self.emit("invoice.paid", invoice)

    def invoice_pay(self, params: Params, oid: str) -> Obj:
        invoice = self.get("invoice", oid)
        if invoice["status"] != "open":
            raise StripeApiError(f"Invoice is {invoice['status']}; only open invoices can be paid.")
        self._mark_paid(invoice)
        return self.public(invoice)

    def invoice_void(self, params: Params, oid: str) -> Obj:
        invoice = self.get("invoice", oid)
        if invoice["status"] != "open":
            raise StripeApiError(f"Invoice is {invoice['status']}; only open invoices can be voided.")
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = self.now()
        self.emit("invoice.voided", invoice)
        return self.public(invoice)

    # --- invoice items -------------------------------------------------------------
    def invoiceitem_create(self, params: Params) -> Obj:
        customer = self.get("customer", params.get("customer") or "")
        price = self.get("price", params["price"]) if params.get("price") else None
        quantity = _dec(params.get("quantity", 1), "quantity")
        if price:
            amount = price_amount(price, quantity)
        elif "amount" in params:
            amount = _int(params["amount"], "amount")
        elif "unit_amount_decimal" in params:
            amount = _round_minor(quantity * _dec(params["unit_amount_decimal"], "unit_amount_decimal"))
        else:
            raise _missing("amount")
        currency = (price or {}).get("currency") or params.get("currency") or customer["currency"]
        if not currency:
            raise _missing("currency")
        invoice = self.get("invoice", params["invoice"]) if params.get("invoice") else None
        if invoice and (invoice["status"] != "draft" or invoice["customer"] != customer["id"]):
            raise StripeApiError(
                "Invoice items can only be added to the customer's draft invoices.", param="invoice"
            )
        sub = params.get("subscription")
        if sub:
            self.get("subscription", sub)
        now = self.now()
        period = params.get("period") or {}
        item = self.new(
            "invoiceitem",
            "ii",
            customer=customer["id"],
            amount=amount,
            currency=str(currency).lower(),
            description=params.get("description"),
            date=now,
            invoice=invoice["id"] if invoice else None,
            quantity=_num(quantity),
            quantity_decimal=str(quantity),
            net_amount=amount,
            _price=(price or {}).get("id"),
            period={
                "start": _int(period.get("start", now), "period"),
                "end": _int(period.get("end", now), "period"),
            },
            parent={"type": "subscription_details", "subscription_details": {"subscription": sub}}
            if sub
            else None,
            metadata=dict(params.get("metadata") or {}),
        )
        item["pricing"] = {
            "type": "price_details",
            "unit_amount_decimal": str(amount),
            "price_details": {"price": price["id"], "product": price["product"]} if price else None,
        }
        self.store(item, "invoiceitem.created")
        if invoice:
            invoice["_lines"].append(self._item_line(invoice["id"], item))
            self._totals(invoice)
        return self.public(item)

    # --- credit notes ----------------------------------------------------------------
    def _build_credit_note(self, params: Params) -> tuple[Obj, Obj]:
        invoice = self.get("invoice", params.get("invoice") or "")
        if invoice["status"] not in ("open", "paid"):
            raise StripeApiError(
                "Credit notes can only be created on finalized (open or paid) invoices.",
                code="invoice_not_editable",
                param="invoice",
            )
        by_id = {ln["id"]: ln for ln in invoice["_lines"]}
        credited: dict[str, int] = {}
        for cn in self.objects.get("credit_note", {}).values():
            for ln in cn["lines"]["data"]:
                if cn["invoice"] == invoice["id"] and ln.get("invoice_line_item"):
                    credited[ln["invoice_line_item"]] = (
                        credited.get(ln["invoice_line_item"], 0) + ln["amount"]
                    )
        lines_in = params.get("lines") or []
        if not lines_in and "amount" in params:
            lines_in = [
                {"type": "custom_line_item", "unit_amount": params["amount"], "description": "Credit"}
            ]
        if not lines_in:
            raise _missing("lines")
        lines = []
        for i, spec in enumerate(lines_in):
            kind = spec.get("type")
            cnl = copy.deepcopy(SHAPES["credit_note_line_item"])
            cnl.update(
                id=f"cnli_{uuid.uuid4().hex[:24]}",
                type=kind,
                livemode=False,
                metadata={},
                tax_rates=[],
                pretax_credit_amounts=[],
                discount_amounts=[],
            )
            if kind == "invoice_line_item":
                line = by_id.get(spec.get("invoice_line_item", ""))
                if line is None:
                    raise StripeApiError(
                        f"Invoice line item not on invoice {invoice['id']}.",
                        param=f"lines[{i}][invoice_line_item]",
                    )
                if "amount" in spec:
                    amount = _int(spec["amount"], f"lines[{i}][amount]")
                elif "quantity" in spec:
                    unit = Decimal(line["amount"]) / Decimal(line["quantity"] or 1)
                    amount = _round_minor(_dec(spec["quantity"], f"lines[{i}][quantity]") * unit)
                else:
                    amount = line["amount"]
                credited[line["id"]] = credited.get(line["id"], 0) + amount
                if credited[line["id"]] > line["amount"]:
                    raise StripeApiError(
                        "The credit note amount exceeds the line's remaining amount.",
                        code="credit_note_amount_too_large",
                        param=f"lines[{i}]",
                    )
                cnl.update(
                    invoice_line_item=line["id"],
                    amount=amount,
                    description=line["description"],
                    quantity=_num(_dec(spec.get("quantity", line["quantity"]), "quantity")),
                    unit_amount=None,
                    unit_amount_decimal=None,
                )
            elif kind == "custom_line_item":
                quantity = _dec(spec.get("quantity", 1), f"lines[{i}][quantity]")
                unit_dec = _dec(
                    spec.get("unit_amount_decimal", spec.get("unit_amount", 0)), f"lines[{i}][unit_amount]"
                )
                amount = _round_minor(quantity * unit_dec)
                cnl.update(
                    amount=amount,
                    description=spec.get("description", ""),
                    quantity=_num(quantity),
                    unit_amount=int(unit_dec) if unit_dec == int(unit_dec) else None,
                    unit_amount_decimal=str(unit_dec),
                )
                cnl.pop("invoice_line_item", None)
            else:
                raise StripeApiError(
                    "lines[][type] must be invoice_line_item or custom_line_item.", param=f"lines[{i}][type]"
                )
            if amount <= 0:
                raise StripeApiError("Credit note amounts must be positive.", param=f"lines[{i}]")
            lines.append(cnl)
        total = sum(ln["amount"] for ln in lines)
        already = invoice["pre_payment_credit_notes_amount"] + invoice["post_payment_credit_notes_amount"]
        if total + already > invoice["total"]:
            raise StripeApiError(
                "The credit note total exceeds the invoice's remaining amount.",
                code="credit_note_amount_too_large",
                param="lines",
            )
        note = self.new(
            "credit_note",
            "cn",
            amount=total,
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            currency=invoice["currency"],
            customer=invoice["customer"],
            invoice=invoice["id"],
            memo=params.get("memo"),
            reason=params.get("reason"),
            status="issued",
            effective_at=self.now(),
            type="post_payment" if invoice["status"] == "paid" else "pre_payment",
            voided_at=None,
            refunds=[],
            pre_payment_amount=total if invoice["status"] != "paid" else 0,
            discount_amount=0,
            discount_amounts=[],
            post_payment_amount=total if invoice["status"] == "paid" else 0,
            out_of_band_amount=None,
            pdf=None,
            shipping_cost=None,
            pretax_credit_amounts=[],
            total_taxes=[],
            metadata=dict(params.get("metadata") or {}),
        )
        note["lines"] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": f"/v1/credit_notes/{note['id']}/lines",
        }
        return note, invoice

    def credit_note_preview(self, params: Params) -> Obj:
        note, _ = self._build_credit_note(params)
        note["id"] = f"cn_preview_{uuid.uuid4().hex[:16]}"
        return self.public(note)

    def credit_note_create(self, params: Params) -> Obj:
        note, invoice = self._build_credit_note(params)
        seq = 1 + sum(
            1 for cn in self.objects.get("credit_note", {}).values() if cn["invoice"] == invoice["id"]
        )
        note["number"] = f"{invoice['number']}-CN-{seq:02d}"
        if invoice["status"] == "paid":
            invoice["post_payment_credit_notes_amount"] += note["amount"]
        else:
            invoice["pre_payment_credit_notes_amount"] += note["amount"]
            self._totals(invoice)
        return self.public(self.store(note, "credit_note.created"))
