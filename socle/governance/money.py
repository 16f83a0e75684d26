"""Money: exact amounts of euros as integer nano-euros (10⁻⁹ EUR), and what engines charge.

Budgets, settlements and usage records all price through :func:`cost_nano_eur`, so they agree to the
nano-euro. Integers rather than micro-euros or floats: a cheap engine (0.01 EUR per million tokens)
costs 10 nano-euros a token, which micro-euros would round up a thousandfold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from socle.config import EngineConfig
from socle.errors import BadRequestError

__all__ = [
    "NANO_PER_EUR",
    "EurAmount",
    "Spend",
    "cost_nano_eur",
    "decimal_text",
    "eur_to_nano",
    "format_eur",
    "nano_to_eur",
]

NANO_PER_EUR = 10**9
EurAmount = Decimal | int | str | float


def eur_to_nano(amount: EurAmount) -> int:
    """Euros as integer nano-euros, rounded up. A float is read as written (0.1 is 0.1, not 0.1000...01)."""
    try:
        value = (
            amount
            if isinstance(amount, Decimal)
            else Decimal(repr(amount) if isinstance(amount, float) else str(amount))
        )
    except InvalidOperation as exc:
        raise BadRequestError(f"Invalid amount of euros: {amount!r}.") from exc
    if not value.is_finite():
        raise BadRequestError(f"Invalid amount of euros: {amount!r}.")
    return int((value * NANO_PER_EUR).to_integral_value(rounding=ROUND_CEILING))


def nano_to_eur(nano: int) -> Decimal:
    """Nano-euros as euros, exactly."""
    return Decimal(nano).scaleb(-9)


def decimal_text(nano: int) -> str:
    """Nano-euros as an exact plain decimal string of euros: ``12.5``, ``0.0000001``."""
    return format(nano_to_eur(nano).normalize(), "f")


def format_eur(nano: int) -> str:
    """An amount for people: ``12.50 EUR``, or up to six decimals for tiny amounts (``0.000135 EUR``)."""
    value = nano_to_eur(nano)
    if value == 0 or abs(value) >= Decimal("0.01"):
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_CEILING)} EUR"
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_CEILING)} EUR"


def cost_nano_eur(config: EngineConfig, prompt_tokens: int, completion_tokens: int) -> int:
    """What an engine charges for some tokens, in nano-euros, exactly (rounded up)."""
    cost = prompt_tokens * _nano_per_token(config.price_input_per_mtok) + completion_tokens * _nano_per_token(
        config.price_output_per_mtok
    )
    return int(cost.to_integral_value(rounding=ROUND_CEILING))


def _nano_per_token(eur_per_mtok: float) -> Decimal:
    return Decimal(repr(eur_per_mtok)) * 1000  # 1 EUR per million tokens = 1000 nano-euros per token


@dataclass(frozen=True, slots=True)
class Spend:
    """An amount of use: tokens and nano-euros."""

    tokens: int
    nano_eur: int

    @property
    def eur(self) -> Decimal:
        return nano_to_eur(self.nano_eur)
