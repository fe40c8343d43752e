"""How numbers read in the report and on the analytics pages: one place, so the PDF, the
pages and their tests agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

NOT_REACHED = "NR"
DASH = "—"


def percent(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}%"


def interval(
    bounds: Sequence[float | None] | None, *, as_percent: bool = False, digits: int = 1
) -> str:
    if not bounds or (bounds[0] is None and bounds[1] is None):
        return DASH
    low, high = bounds

    def one(value: float | None) -> str:
        if value is None:
            return NOT_REACHED
        return f"{100 * value:.{digits}f}" if as_percent else f"{value:.{digits}f}"

    return f"{one(low)}–{one(high)}"


def rate(block: dict[str, Any] | None) -> str:
    """'11/21 (52.4%; 95% CI 29.8–74.3)'."""
    if not block:
        return DASH
    if block.get("proportion") is None:
        return f"{block['n']}/{block['N']}"
    return (
        f"{block['n']}/{block['N']} ({percent(block['proportion'])}; 95% CI "
        f"{interval(block['ci95'], as_percent=True)})"
    )


def p_value(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def months(value: float | None) -> str:
    return NOT_REACHED if value is None else f"{value:.1f}"


def number(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


# The pooled row of the transplant analyses: both arms together, the arm as a stratum (tests)
# or a covariate (Cox), named alike on the page and in the PDF.
POOLED = gettext_lazy("Both arms (adjusted for arm)")

# A model or test that cannot be estimated keeps a short reason in the snapshot (SAP.md 6:
# "null with a reason"); readers get one sentence in their language for each kind of reason.
_TOO_FEW_EVENTS = ("no events", "no patients", "no patient-time")
_SEPARATION = ("separation", "collinear", "did not converge", "could not be fitted", "not finite")
_ONE_GROUP = (
    "does not vary",
    "only one group",
    "fewer than two groups",
    "no patient transplanted",
    "every patient transplanted",
    "no variance",
    "no stratum",
)


def not_estimable(reason: str | None) -> str:
    """One translated sentence for a reason why a model or test has no estimate; the technical
    account is in the log of the computation, never shown."""
    text = (reason or "").lower()
    if any(word in text for word in _TOO_FEW_EVENTS):
        return _("Not estimable: too few events.")
    if any(word in text for word in _SEPARATION):
        return _(
            "Not estimable: the model cannot be fitted because the groups are completely "
            "separated or the covariates collinear (too few events in a group)."
        )
    if any(word in text for word in _ONE_GROUP):
        return _("Not estimable: there is only one group to compare.")
    return _("Not estimable from these data.")
