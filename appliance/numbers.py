"""Phone numbers as the switch compares them: one normal form per number.

Trunks hand us numbers in every shape: ``013812345678``, ``+86 10 8888 6666``,
``008610...``, ``4008001234``, ``95588``, a gateway's four-digit DNIS.
``normalise_number`` turns each into one form with Google's libphonenumber
rules (the ``phonenumbers`` package), so call routing compares like with
like: a valid number becomes E.164 (``+8613812345678``); China's national
service numbers (400 and 800 hotlines, 95xxx short codes) stay as dialled
inside the country (``4008001234``), because they cannot be reached from
abroad and their E.164 form is never what is configured; anything else
(short codes, internal numbers, text such as ``anonymous``) is kept as
given, less visual separators.
"""

from __future__ import annotations

import re

import phonenumbers

_VISUAL_SEPARATORS = re.compile(r"[\s().\-]")
_DIALLABLE = re.compile(r"\+?[0-9]+")
_CN_SERVICE = re.compile(r"(?:400|800)[0-9]{7}|95[0-9]{3,4}")
"""China's 400/800 hotlines (ten digits) and 95xxx(x) short service numbers."""

SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
"""ISO 3166 region codes libphonenumber knows (``CN``, ``HK``, ``US`` ...)."""


def normalise_number(text: str, region: str = "CN") -> str:
    """The normal form of ``text``, dialled in ``region`` (see the module's docs)."""
    digits = _VISUAL_SEPARATORS.sub("", text)
    if not _DIALLABLE.fullmatch(digits):
        return text
    if region == "CN" and _CN_SERVICE.fullmatch(digits):
        return digits
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return digits
    national = phonenumbers.national_significant_number(number)
    if number.country_code == 86 and _CN_SERVICE.fullmatch(national):
        return national
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return digits
