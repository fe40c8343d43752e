"""The figures of a snapshot belong to it: drawn once, in every language, as soon as it is
complete, and kept (analytics.models.SnapshotFigure) so that pages and reports serve them
without drawing. A figure nobody drew yet (an older snapshot, one not in figures.SHOWN) is
drawn the first time it is asked for, and kept too.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import translation

from analytics import figures
from analytics.models import Snapshot, SnapshotFigure, Status

logger = logging.getLogger(__name__)

LANGUAGES = tuple(code for code, _ in settings.LANGUAGES)


def figures_draw(snapshot: Snapshot, *, names: tuple[str, ...] = figures.SHOWN) -> int:
    """Draw and keep the snapshot's figures in every language (those not kept yet); returns
    how many were drawn."""
    if snapshot.status != Status.COMPLETE:
        return 0
    kept = set(SnapshotFigure.objects.filter(snapshot=snapshot).values_list("name", "language"))
    started = time.perf_counter()
    drawn = []
    for language in LANGUAGES:
        with translation.override(language):
            for name in names:
                if (name, language) not in kept and figures.drawable(name, snapshot.output):
                    svg = figures.draw(name, snapshot.output)
                    drawn.append(
                        SnapshotFigure(snapshot=snapshot, name=name, language=language, svg=svg)
                    )
    SnapshotFigure.objects.bulk_create(drawn, ignore_conflicts=True)
    logger.info(
        "drew %d figures of snapshot %s in %.2f s",
        len(drawn),
        snapshot.pk,
        time.perf_counter() - started,
    )
    return len(drawn)


def figure_svg(snapshot: Snapshot, name: str, language: str) -> str:
    """The SVG of one figure of a complete snapshot in one language: the kept one, or drawn
    now and kept."""
    if not figures.drawable(name, snapshot.output) or language not in LANGUAGES:
        raise KeyError(f"no figure {name!r} in {language!r}")
    kept = (
        SnapshotFigure.objects.filter(snapshot=snapshot, name=name, language=language)
        .values_list("svg", flat=True)
        .first()
    )
    if kept is not None:
        return kept
    with translation.override(language):
        svg = figures.draw(name, snapshot.output)
    try:
        with transaction.atomic():
            SnapshotFigure.objects.create(snapshot=snapshot, name=name, language=language, svg=svg)
    except IntegrityError:  # drawn by another request meanwhile: the same bytes
        pass
    return svg
