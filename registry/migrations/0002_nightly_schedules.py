"""The nightly schedule, stored in django-celery-beat so administrators can edit it."""

from django.conf import settings
from django.db import migrations

TASK = "registry.tasks.refresh_quality_queries"


def create(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = crontab_model.objects.get_or_create(
        minute="30", hour="1", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone=settings.TIME_ZONE)
    task_model.objects.get_or_create(
        name="Refresh data-quality queries (nightly)",
        defaults={"task": TASK, "crontab": crontab, "enabled": True})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
