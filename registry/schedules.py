"""The periodic work, stored in django-celery-beat so administrators can see and edit it.

The migrations created these rows once; a database emptied since (``manage.py flush``, a
restore of a partial dump, a test that empties every table) lost them, and nothing noticed:
the nightly queries, analytics and reports simply stopped. So every schedule is declared
here and put back after every ``migrate`` (Django's post_migrate signal, also sent after
``flush``). A schedule an administrator edited or disabled is left as it is; one that is
missing is created again (to stop one, untick "enabled" instead of deleting it).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Schedule:
    task: str
    name: str
    description: str = ""
    crontab: dict[str, str] | None = None  # minute, hour, day_of_month
    every_minutes: int | None = None


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        task="registry.tasks.refresh_quality_queries",
        name="Refresh data-quality queries (nightly)",
        crontab={"minute": "30", "hour": "1", "day_of_month": "*"},
    ),
    Schedule(
        task="registry.tasks.warm_worklists",
        name="Compute the day's worklists (nightly)",
        description="Every site's follow-ups due, computed into the shared cache before the "
        "first nurse opens the worklist.",
        crontab={"minute": "10", "hour": "0", "day_of_month": "*"},
    ),
    Schedule(
        task="registry.tasks.dispatch_outbox",
        name="Send the outbox's pending work to the workers (every minute)",
        every_minutes=1,
    ),
    Schedule(
        task="analytics.tasks.nightly_analytics",
        name="Compute analytics snapshots (nightly)",
        description="The whole registry and every site; skipped where the data is unchanged.",
        crontab={"minute": "0", "hour": "2", "day_of_month": "*"},
    ),
    Schedule(
        task="analytics.tasks.watch_computations",
        name="Resume interrupted analytics computations (every minute)",
        description="Closes a computation whose worker stopped renewing its claim, and "
        "computes its scope again.",
        every_minutes=1,
    ),
    Schedule(
        task="analytics.tasks.monthly_reports",
        name="Archive last month's PDF reports (monthly)",
        description="The whole registry and every site, in English and Chinese.",
        crontab={"minute": "0", "hour": "3", "day_of_month": "1"},
    ),
)


def ensure_schedules(**kwargs) -> None:
    """Create every schedule that is missing (a post_migrate receiver); touch no other."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    for schedule in SCHEDULES:
        if PeriodicTask.objects.filter(task=schedule.task).exists():
            continue
        timing: dict[str, object] = {}
        if schedule.crontab is not None:
            timing["crontab"], _ = CrontabSchedule.objects.get_or_create(
                day_of_week="*", month_of_year="*", timezone=settings.TIME_ZONE, **schedule.crontab
            )
        else:
            timing["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=schedule.every_minutes, period=IntervalSchedule.MINUTES
            )
        PeriodicTask.objects.get_or_create(
            name=schedule.name,
            defaults={
                "task": schedule.task,
                "description": schedule.description,
                "enabled": True,
                **timing,
            },
        )
