"""Chinese administrative division codes (GB/T 2260): six digits, NN PP CC."""

from __future__ import annotations

import re

PROVINCE_PREFIXES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
    "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
    "63", "64", "65", "71", "81", "82",
})


def is_valid(code: str) -> bool:
    return bool(re.fullmatch(r"\d{6}", code)) and code[:2] in PROVINCE_PREFIXES


def is_province(code: str) -> bool:
    """`NN0000`."""
    return is_valid(code) and code[2:] == "0000"


def is_city(code: str) -> bool:
    """`NNNN00` but not `NN0000`."""
    return is_valid(code) and code[4:] == "00" and code[2:4] != "00"


def province_of(code: str) -> str:
    return code[:2] + "0000"
