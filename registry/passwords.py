"""A password rule Django's validators miss (AUTH_PASSWORD_VALIDATORS runs it after theirs).

Django's CommonPasswordValidator compares the whole password with its list of 20,000 common
ones, so `iloveyou1234` (the common `iloveyou` with digits added to reach the minimum length)
and `aaaaaaaaaaaa` (one key held down) pass it. This one refuses a password made of too few
different characters, and one that is a common password with digits or symbols around it, or
repeated (`qwertyqwerty`).
"""

from __future__ import annotations

import re
from functools import cache

from django.contrib.auth.password_validation import CommonPasswordValidator
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

_AROUND_THE_LETTERS = re.compile(r"^[^a-z]+|[^a-z]+$")


@cache
def common_passwords() -> frozenset[str]:
    """Django's list (the same file its CommonPasswordValidator reads), lower case."""
    return frozenset(CommonPasswordValidator().passwords)


def shortest_repeated_unit(text: str) -> str:
    """'abcabcabc' -> 'abc'; a text that is no repetition is its own unit."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def common_core(password: str) -> str:
    """The common password this one is built on, or "" if none is."""
    lowered = password.lower()
    for candidate in (
        shortest_repeated_unit(lowered),
        _AROUND_THE_LETTERS.sub("", lowered),
        shortest_repeated_unit(_AROUND_THE_LETTERS.sub("", lowered)),
    ):
        if candidate and candidate != lowered and candidate in common_passwords():
            return candidate
    return ""


class CommonPasswordVariantValidator:
    def __init__(self, min_different_characters: int = 5) -> None:
        self.min_different_characters = min_different_characters

    def validate(self, password: str, user: object = None) -> None:
        if len(set(password.lower())) < self.min_different_characters:
            raise ValidationError(
                _("This password repeats too few characters: use at least %(count)d different.")
                % {"count": self.min_different_characters},
                code="password_too_repetitive",
            )
        if common_core(password):
            raise ValidationError(
                _("This password is a common password with a few characters added."),
                code="password_too_common",
            )

    def get_help_text(self) -> str:
        return _(
            "Your password can't be a common password with digits or symbols added, and needs "
            "at least %(count)d different characters."
        ) % {"count": self.min_different_characters}
