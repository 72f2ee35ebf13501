"""What an MT940 `:86:` (information to account owner) says: the reference and the text.

Banks structure the field three ways, and intake reads each:

* German banks' subfields (the DFÜ-Abkommen format): a three-digit business transaction
  code, then `?NN` subfields (the `?` may be another separator, the character after the
  code): `?00` posting text, `?20`–`?29` and `?60`–`?63` the remittance lines, `?30`/`?31`
  the counterparty's bank and account, `?32`/`?33` its name. SEPA remittance lines carry
  keywords (`EREF+` end-to-end reference, `SVWZ+` remittance text, `MREF+`, `CRED+`, …);
  a keyword's value runs on through full (27-character) subfields and ends with a shorter
  one. The text is `SVWZ+`, else the remittance lines, else the `?00` posting text.
* Slash keys (`/EREF/…/REMI/…/NAME/…`, Dutch and other banks): `/EREF/` is the end-to-end
  reference, `/REMI/` the remittance text.
* Free text: the text itself.

The field's physical lines are joined first: a line of 65 characters or more was wrapped by
the 65-column limit and continues without a break; a shorter one ended where the bank ended
it, so a space joins it (`Betaling` on one line and `sieraden` on the next stay two words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WRAP = 65  # SWIFT MT lines hold 65 characters
SUBFIELD = 27  # a German ?20-?29 / ?60-?63 remittance subfield holds 27
_GERMAN = re.compile(r"^(\d{3})([^\w\s])")
_SEPA_KEY = re.compile(r"(EREF|KREF|MREF|CRED|DEBT|SVWZ|ABWA|ABWE|IBAN|BIC|COAM|OAMT|PURP)\+")
_SLASH = re.compile(r"/([A-Z]{2,4})/")
NONE_GIVEN = ("NONREF", "NOTPROVIDED", "NONE")


@dataclass(frozen=True)
class Details:
    reference: str | None
    text: str | None


def joined(lines: list[str]) -> str:
    """Physical lines as one text, wrapped lines rejoined (see the module doc), runs of
    spaces as one."""
    out = lines[0] if lines else ""
    for before, line in zip(lines, lines[1:]):
        out += ("" if len(before) >= WRAP else " ") + line
    return " ".join(out.split())


def read(pieces: list[str]) -> Details:
    """Reference and text of a line's `:86:` fields (several in a row count as one)."""
    raw = "\n".join(pieces)
    german = _GERMAN.match(raw.lstrip())
    if german:  # subfields delimit themselves: physical lines join without a break
        body = raw.lstrip().replace("\r", "").replace("\n", "")
        return _german(body[german.end() - 1 :], german.group(2))
    text = joined(raw.split("\n"))
    if _SLASH.match(text):
        keys = _slash(text)
        if "EREF" in keys or "REMI" in keys:
            return Details(_given(keys.get("EREF")), (keys["REMI"] or None) if "REMI" in keys else text)
    return Details(None, text or None)


def _given(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if not value or value.upper() in NONE_GIVEN else value


def _slash(text: str) -> dict[str, str]:
    """/KEY/value pairs; a key's value runs to the next /KEY/ of two to four capitals."""
    keys = list(_SLASH.finditer(text))
    return {
        m.group(1): text[m.end() : keys[i + 1].start() if i + 1 < len(keys) else len(text)].strip()
        for i, m in enumerate(keys)
    }


def _german(body: str, separator: str) -> Details:
    subfields: dict[str, str] = {}
    for part in body.split(separator)[1:]:
        code, value = part[:2], part[2:]
        if code.isdigit():
            subfields[code] = subfields.get(code, "") + value
    lines = [subfields[f"{n}"] for n in [*range(20, 30), *range(60, 64)] if f"{n}" in subfields]
    # a remittance subfield holds 27 characters: a full one runs on into the next, a shorter
    # one ended there (so a reference in it ends there too)
    remittance = "".join(line + ("" if len(line) >= SUBFIELD else "\n") for line in lines)
    ordered = list(_SEPA_KEY.finditer(remittance))
    keys = {m.group(1): m for m in ordered}

    def keyword(name: str) -> str | None:
        if name not in keys:
            return None
        i = ordered.index(keys[name])
        end = ordered[i + 1].start() if i + 1 < len(ordered) else len(remittance)
        return remittance[keys[name].end() : end]

    reference = (keyword("EREF") or "").split("\n")[0]
    text = keyword("SVWZ") or (remittance if not ordered else None) or subfields.get("00", "")
    return Details(_given(reference), " ".join(text.split()) or None)
