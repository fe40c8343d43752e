"""Data-quality queries: opened and closed by the registry itself as the data changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from registry.icaht_reasons import icaht_reason

from . import choices
from .base import ChoiceLabels
from .patients import Patient


class QueryKind(models.TextChoices):
    BASELINE_INCOMPLETE = "baseline_incomplete", _("Baseline incomplete")
    CRS_STATUS_UNKNOWN = "crs_status_unknown", _("CRS status unknown after day 30")
    RESPONSE_NOT_ASSESSED = "response_not_assessed", _("Response not assessed by day 60")
    FOLLOW_UP_OVERDUE = "follow_up_overdue", _("Follow-up overdue")
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", _("Lost to follow-up")
    CONTACT_BEFORE_EVENT = "contact_before_event", _("Last contact earlier than latest event")
    GRADE_MISMATCH = "grade_mismatch", _("Derived ASTCT grade differs from recorded grade")
    ICAHT_NOT_GRADABLE = "icaht_not_gradable", _("Early ICAHT not gradable by day 35")
    IVIG_WITHOUT_IGG = "ivig_without_igg", _("Immunoglobulin replacement without an IgG value")
    PERSISTENCE_NOT_ASSESSED = (
        "persistence_not_assessed",
        _("CAR persistence or B-cell aplasia not assessed by month 6"),
    )
    FATAL_EVENT_WITHOUT_DEATH = (
        "fatal_event_without_death",
        _("Grade 5 late event without a matching death"),
    )


class DataQualityQuery(ChoiceLabels):
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="queries", verbose_name=_("patient")
    )
    kind = models.CharField(_("kind"), max_length=30, choices=QueryKind.choices)
    # Tells apart queries of one kind on one patient, e.g. the visit or the episode concerned.
    key = models.CharField(_("key"), max_length=60, blank=True, default="")
    # What the registry wrote, in English: the record kept in the history. Pages show `text`,
    # written from the kind and `params` in the reader's language.
    message = models.CharField(_("message"), max_length=300)
    params = models.JSONField(_("details"), default=dict, blank=True)
    is_open = models.BooleanField(_("open"), default=True)
    opened_at = models.DateTimeField(_("opened"))
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # Null when the registry closed it because the data was fixed; a person otherwise.
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("closed by"),
    )
    close_reason = models.TextField(_("reason for closing"), blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at"]
        verbose_name = _("data-quality query")
        verbose_name_plural = _("data-quality queries")
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "kind", "key"], name="one_query_per_condition"
            ),
            models.CheckConstraint(
                condition=Q(is_open=True) | Q(closed_at__isnull=False),
                name="closed_query_has_closed_at",
            ),
        ]
        indexes = [
            models.Index(fields=["is_open", "kind"]),
            # The worklist's open queries, newest first, a page at a time: read in this order
            # until a page of the user's sites is found, not all sorted (docs/PERFORMANCE.md).
            models.Index(
                fields=["-opened_at", "-id"],
                condition=Q(is_open=True),
                name="open_queries_newest_first",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient}: {self.get_kind_display()}"

    @property
    def text(self) -> str:
        """The query in the reader's language (the stored message for a row without details)."""
        return query_text(self.kind, self.params) or self.message

    text.fget.short_description = _("message")  # its heading in the admin


# The baseline fields a BASELINE_INCOMPLETE query can name, as the query names them.
BASELINE_FIELDS = {
    "disease_burden": _("disease burden"),
    "relapse_status": _("relapse status"),
    "bm_blast_pct": _("marrow blasts"),
}


# The late events a FATAL_EVENT_WITHOUT_DEATH query can name, as it names them.
FATAL_EVENTS = {"infection": _("infection"), "iec_hs": _("IEC-HS episode")}


def _cause_label(cause: str) -> str:
    return str(dict(choices.DEATH_CAUSE).get(cause, cause))


def visit_label(name: str) -> str:
    """'day100' -> 'Day 100', 'month6' -> 'Month 6', 'year3' -> 'Year 3', in the user's language."""
    for prefix, label in (
        ("day", gettext("Day %(n)s")),
        ("month", gettext("Month %(n)s")),
        ("year", gettext("Year %(n)s")),
    ):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return label % {"n": name[len(prefix) :]}
    return name


def query_text(kind: str, params: dict) -> str | None:
    """A query's message in the active language, from its kind and details; None when the
    details are missing (a row written before they were kept)."""
    try:
        match kind:
            case QueryKind.BASELINE_INCOMPLETE:
                fields = [str(BASELINE_FIELDS[name]) for name in params["fields"]]
                return gettext("Baseline incomplete: %(fields)s missing.") % {
                    "fields": pgettext("between the items of a list", ", ").join(fields)
                }
            case QueryKind.CRS_STATUS_UNKNOWN:
                return gettext("CRS status still unknown more than 30 days after day 0.")
            case QueryKind.RESPONSE_NOT_ASSESSED:
                return gettext("Response not assessed by day 60.")
            case QueryKind.FOLLOW_UP_OVERDUE:
                return gettext(
                    "Follow-up visit %(visit)s overdue: its window closed on %(closes)s."
                ) % {"visit": visit_label(params["visit"]), "closes": params["closes"]}
            case QueryKind.LOST_TO_FOLLOW_UP:
                return gettext(
                    "Lost to follow-up: last seen on %(last)s (contact or day 0), more than "
                    "180 days ago."
                ) % {"last": params["last_seen"]}
            case QueryKind.CONTACT_BEFORE_EVENT:
                return gettext(
                    "Last contact (%(last)s) is earlier than the latest recorded event (%(event)s)."
                ) % {"last": params["last_contact"], "event": params["event"]}
            case QueryKind.GRADE_MISMATCH:
                return gettext(
                    "Recorded ASTCT grade %(recorded)s differs from the grade %(derived)s derived "
                    "from the findings (episode of %(onset)s)."
                ) % {
                    "recorded": params["recorded"],
                    "derived": params["derived"],
                    "onset": params["onset"],
                }
            case QueryKind.ICAHT_NOT_GRADABLE:
                return gettext("Early ICAHT by day 35 — %(reason)s") % {
                    "reason": icaht_reason(params["rule"], params["rule_params"])
                }
            case QueryKind.IVIG_WITHOUT_IGG:
                return gettext(
                    "Immunoglobulin replacement is recorded (from %(start)s) but no IgG value: "
                    "enter the IgG level with the laboratory values."
                ) % {"start": params["start"]}
            case QueryKind.PERSISTENCE_NOT_ASSESSED:
                return gettext(
                    "No CAR persistence assessment and no B-cell aplasia (yes or no) recorded "
                    "by day 183 (%(due)s)."
                ) % {"due": params["due"]}
            case QueryKind.FATAL_EVENT_WITHOUT_DEATH:
                names = {
                    "event": FATAL_EVENTS[params["event"]],
                    "onset": params["onset"],
                    "death": params["death"],
                    "expected": _cause_label(params["expected"]),
                }
                if params["death"] is None:
                    text = gettext(
                        "A grade 5 %(event)s (onset %(onset)s) means death from it, but no death "
                        "is recorded: record the death, or correct the grade."
                    )
                elif params["death"] < params["onset"]:
                    text = gettext(
                        "A grade 5 %(event)s (onset %(onset)s) means death from it, but the death "
                        "is recorded on %(death)s, before that onset: correct the dates, or the "
                        "grade."
                    )
                else:
                    names["cause"] = _cause_label(params["cause"])
                    text = gettext(
                        "A grade 5 %(event)s (onset %(onset)s) means death from it, but the death "
                        "of %(death)s is recorded with the cause “%(cause)s”: choose "
                        "“%(expected)s”, or correct the grade."
                    )
                return text % names
    except (KeyError, TypeError):
        return None
    return None
