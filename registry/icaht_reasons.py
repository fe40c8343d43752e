"""The sentence a nurse reads for an ICAHT grade or its absence (registry.domain.icaht names the
rule and its numbers; the sentence is written when shown, in the reader's language)."""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from registry.domain.icaht import IcahtRule

REASONS = {
    IcahtRule.EARLY_NO_NEUTROPENIA: gettext_lazy(
        "No day with an ANC at or below 500/µL in days 0-30."
    ),
    IcahtRule.EARLY_ANC_500_DAYS: gettext_lazy(
        "ANC at or below 500/µL on %(days_500)s days of days 0-30."
    ),
    IcahtRule.EARLY_ANC_100_DAYS: gettext_lazy(
        "ANC at or below 100/µL on %(days_100)s days of days 0-30."
    ),
    IcahtRule.EARLY_NEVER_ABOVE_500: gettext_lazy("ANC never above 500/µL in days 0-30."),
    IcahtRule.EARLY_NO_VALUES: gettext_lazy("Not gradable: no ANC is recorded in days 0-30."),
    IcahtRule.EARLY_NO_WINDOW: gettext_lazy(
        "Not gradable: a relapse or the next therapy on day %(censor_day)s leaves no day of days "
        "0-30 to count."
    ),
    IcahtRule.EARLY_DAYS_MISSING: gettext_lazy(
        "Not gradable: grade %(lowest)s to %(highest)s, depending on days %(days)s, which no "
        "ANC settles; record the ANC of those days."
    ),
    IcahtRule.LATE_NO_CYTOPENIA: gettext_lazy(
        "No two ANC at or below 1500/µL after day 30 (%(values)s counts, lowest %(lowest_anc)s/µL)."
    ),
    IcahtRule.LATE_LOWEST_ANC: gettext_lazy(
        "%(values)s ANC after day 30 at or below %(threshold)s/µL (lowest %(lowest_anc)s/µL)."
    ),
    IcahtRule.LATE_NO_WINDOW: gettext_lazy(
        "Not gradable: a death, a relapse or the next therapy on day %(censor_day)s ends the "
        "follow-up before day 31."
    ),
    IcahtRule.LATE_TOO_FEW_VALUES: gettext_lazy(
        "Not gradable: %(values)s ANC from day 31 to day %(last_day)s; two are needed."
    ),
    IcahtRule.LATE_TAIL_MISSING: gettext_lazy(
        "Not gradable yet: the last ANC is from day %(last_count)s; record one from day "
        "%(from_day)s to day %(last_day)s."
    ),
    IcahtRule.LATE_UNCONFIRMED: gettext_lazy(
        "Not gradable yet: the ANC of day %(day)s (%(anc)s/µL) is at or below "
        "%(threshold)s/µL, and a second count must confirm it."
    ),
}

# Appended when a death, a relapse or the next therapy ended the early window before day 30.
COUNTED_UNTIL = gettext_lazy(
    "Counted to day %(until_day)s: a death, a relapse or the next therapy ends the follow-up there."
)


def _number(value: object) -> object:
    return f"{value:g}" if isinstance(value, float) else value


def icaht_reason(rule: str, params: Mapping[str, object]) -> str:
    """The sentence of a stored rule key and its numbers; empty when none is stored."""
    if not rule:
        return ""
    try:
        sentence = REASONS[IcahtRule(rule)]
    except ValueError:
        return _("Unknown rule %(rule)s.") % {"rule": rule}
    values = {name: _number(value) for name, value in params.items()}
    text = str(sentence) % values
    if "until_day" in values:
        # two sentences, as the reader's language puts them one after the other
        text = _("%(reason)s %(counted_until)s") % {
            "reason": text,
            "counted_until": COUNTED_UNTIL % values,
        }
    return text
