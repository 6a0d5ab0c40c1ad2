"""Currencies, exact numbers and the one rounding step.

Everything the engine computes is exact. Amounts and quantities come in as `Decimal`
(or `int`); inside the engine they are carried as `fractions.Fraction` so that the
divisions pricing needs (raw quantity / unit size, days in phase / days in period)
lose nothing, and a line is rounded exactly once, from its exact value, to the
currency's minor unit. Floats are refused everywhere.
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Final

from .errors import PricingInputError, UnknownCurrencyError

Number = Decimal | int | Fraction
"""What the engine accepts as a quantity or an amount (never `float` or `bool`)."""

DISPLAY_DIGITS: Final = 40
"""Significant digits shown for a value whose exact decimal expansion never ends (1/3)."""

ROUNDING_MODES: Final = frozenset(
    {
        decimal.ROUND_HALF_UP,
        decimal.ROUND_HALF_EVEN,
        decimal.ROUND_HALF_DOWN,
        decimal.ROUND_UP,
        decimal.ROUND_DOWN,
        decimal.ROUND_CEILING,
        decimal.ROUND_FLOOR,
        decimal.ROUND_05UP,
    }
)

_ZERO_DIGITS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DIGITS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DIGITS = "CLF UYW"
_TWO_DIGITS = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO "
    "NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS "
    "SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST "
    "XCD XCG YER ZAR ZMW ZWG"
)
# Withdrawn recently enough that invoices in them still get reconciled; their
# exponent is fixed history, so accepting them costs nothing.
_RECENTLY_WITHDRAWN = "ANG BGN CUC HRK SLL ZWL"

MINOR_UNITS: Final = MappingProxyType(
    {
        code: digits
        for codes, digits in (
            (_TWO_DIGITS, 2),
            (_RECENTLY_WITHDRAWN, 2),
            (_ZERO_DIGITS, 0),
            (_THREE_DIGITS, 3),
            (_FOUR_DIGITS, 4),
        )
        for code in codes.split()
    }
)
"""ISO 4217 currency code -> number of digits of its minor unit (USD 2, JPY 0, KWD 3, CLF 4).

Codes without a minor unit (precious metals XAU..., SDR XDR, test code XTS, XXX) are
deliberately absent: nothing is invoiced in them.
"""


def normalize_currency(currency: object) -> str:
    """Return the upper-case ISO 4217 code, or raise `UnknownCurrencyError`."""
    if not isinstance(currency, str):
        raise UnknownCurrencyError(currency)
    code = currency.strip().upper()
    if code not in MINOR_UNITS:
        raise UnknownCurrencyError(currency)
    return code


def is_known_currency(currency: object) -> bool:
    """Tell whether `currency` is an ISO 4217 code with a minor unit (case-insensitive)."""
    return isinstance(currency, str) and currency.strip().upper() in MINOR_UNITS


def minor_units(currency: str) -> int:
    """Return the number of decimal places of the currency's minor unit."""
    return MINOR_UNITS[normalize_currency(currency)]


def check_rounding_mode(rounding: object) -> str:
    """Return `rounding` if it is one of the `decimal` module's rounding modes, else raise."""
    if not isinstance(rounding, str) or rounding not in ROUNDING_MODES:
        modes = ", ".join(sorted(ROUNDING_MODES))
        raise PricingInputError(f"unknown rounding mode {rounding!r}; use one of {modes}")
    return rounding


def to_fraction(value: object, *, what: str = "value") -> Fraction:
    """Convert a `Decimal`, `int` or `Fraction` exactly; refuse floats, bools, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | Fraction):
        raise PricingInputError(
            f"{what} must be a Decimal, int or Fraction, not {type(value).__name__} ({value!r})"
        )
    if isinstance(value, Decimal) and not value.is_finite():
        raise PricingInputError(f"{what} must be a finite number, not {value!r}")
    return Fraction(value)


def to_decimal(value: Fraction) -> Decimal:
    """Return `value` as a `Decimal`: exact when its expansion ends, else to DISPLAY_DIGITS digits."""
    denominator = value.denominator
    twos = fives = 0
    rest = denominator
    while rest % 2 == 0:
        rest //= 2
        twos += 1
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest == 1:
        places = max(twos, fives)
        coefficient = value.numerator * (10**places // denominator)
        return Decimal(f"{coefficient}E-{places}")
    with decimal.localcontext() as ctx:
        ctx.prec = DISPLAY_DIGITS
        ctx.rounding = decimal.ROUND_HALF_EVEN
        return Decimal(value.numerator) / Decimal(denominator)


def decimal_str(value: Decimal | Fraction) -> str:
    """Render a number as a plain decimal string (no exponent), for `as_dict()` output."""
    as_decimal = to_decimal(value) if isinstance(value, Fraction) else value
    return format(as_decimal, "f")


def round_to_exponent(value: Number, places: int, rounding: str = decimal.ROUND_HALF_UP) -> Decimal:
    """Round an exact value to `places` decimal places with `rounding`, in one step."""
    check_rounding_mode(rounding)
    scaled = to_fraction(value, what="amount") * 10**places
    floor = math.floor(scaled)
    remainder = scaled - floor
    # Every decimal rounding mode only looks at the sign, the digits kept and whether
    # the discarded part is zero, below, at or above one half; a stand-in with the
    # same integer part and a discarded part in the same class rounds identically.
    if remainder == 0:
        return Decimal(f"{floor}E-{places}")
    if remainder < Fraction(1, 2):
        stand_in = "25"
    elif remainder == Fraction(1, 2):
        stand_in = "5"
    else:
        stand_in = "75"
    if floor >= 0:
        proxy = Decimal(f"{floor}.{stand_in}")
    else:
        # floor + 0.xx for a negative floor is -(|floor| - 1).(1 - 0.xx)
        complement = {"25": "75", "5": "5", "75": "25"}[stand_in]
        proxy = Decimal(f"-{-floor - 1}.{complement}")
    ctx = decimal.Context(prec=len(str(abs(floor))) + 4, rounding=rounding)
    rounded = int(proxy.quantize(Decimal(1), context=ctx))
    return Decimal(f"{rounded}E-{places}")


def quantize(amount: Number, currency: str, rounding: str = decimal.ROUND_HALF_UP) -> Decimal:
    """Round an exact amount once to the currency's minor unit (USD 0.01, JPY 1, KWD 0.001)."""
    return round_to_exponent(amount, minor_units(currency), rounding)


def trimmed(value: Decimal) -> Decimal:
    """The same number without trailing zeros (``712.070000000000`` → ``712.07``), never in exponent form.

    Database columns hand back every decimal place they store; the working shown to people
    should read as the number was written.
    """
    if not value.is_finite():
        return value
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal
