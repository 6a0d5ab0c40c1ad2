"""Exceptions raised by the pricing engine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class PricingError(Exception):
    """Base class for every error the pricing engine raises."""


class PricingInputError(PricingError, ValueError):
    """An argument the engine cannot price (negative units, naive datetime, float, ...)."""


class UnknownCurrencyError(PricingInputError):
    """A currency code that is not an active ISO 4217 currency."""

    def __init__(self, currency: object) -> None:
        self.currency = currency
        super().__init__(f"unknown currency {currency!r}: not an active ISO 4217 currency code")


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One problem in a charge or catalogue: where it is (`field` path) and why it is wrong."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """Return the issue as plain data."""
        return {"field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.field or '(root)'}: {self.reason}"


class PricingValidationError(PricingError, ValueError):
    """A charge or catalogue broke one or more rules; `errors` lists every one of them."""

    def __init__(self, errors: Iterable[ValidationIssue]) -> None:
        self.errors: tuple[ValidationIssue, ...] = tuple(errors)
        count = len(self.errors)
        lines = "\n".join(f"  - {issue}" for issue in self.errors)
        super().__init__(f"{count} pricing validation error{'s' if count != 1 else ''}:\n{lines}")

    def as_dict(self) -> list[dict[str, str]]:
        """Return the errors as plain data."""
        return [issue.as_dict() for issue in self.errors]
