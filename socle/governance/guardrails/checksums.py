"""Check digits of the identifiers the PII recognisers validate: a match that fails its checksum is
not reported, which is what keeps structured recognisers precise."""

from __future__ import annotations

import re

__all__ = ["IBAN_LENGTHS", "iban_valid", "luhn_valid", "nir_valid", "siren_valid", "siret_valid"]

# Length of the IBAN of each country that issues them (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of payment cards, SIREN and SIRET."""
    if not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616: known country, its exact length, and the mod-97 check equal to 1."""
    iban = _NOT_ALNUM.sub("", text).upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for char in rearranged:
        remainder = (remainder * (100 if char.isalpha() else 10) + int(char, 36)) % 97
    return remainder == 1


def nir_valid(text: str) -> bool:
    """French social security number (NIR): 13 characters and a 2-digit key, key = 97 - (number mod 97).
    Corsica's department codes 2A and 2B count as 19 and 18. First digit 1 or 2 (7 or 8: temporary
    numbers)."""
    nir = _NOT_ALNUM.sub("", text).upper()
    if len(nir) != 15 or nir[0] not in "1278" or not nir[13:].isdigit():
        return False
    body = nir[:13]
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    month = int(body[3:5]) if body.isdigit() else 0
    if not (1 <= month <= 12 or month == 20 or 30 <= month <= 42 or month >= 50):
        return False  # month 01-12, or one of the codes used when it is unknown
    return 97 - int(body) % 97 == int(nir[13:])


def siren_valid(digits: str) -> bool:
    """SIREN (9 digits, Luhn)."""
    return len(digits) == 9 and luhn_valid(digits)


def siret_valid(digits: str) -> bool:
    """SIRET (14 digits, Luhn), with La Poste's exception: its establishments (SIREN 356000000) use
    the sum of the digits modulo 5."""
    if len(digits) != 14 or not digits.isdigit():
        return False
    if digits.startswith("356000000"):
        return sum(int(c) for c in digits) % 5 == 0
    return luhn_valid(digits)
