"""The monthly reports on the 1st at 03:00 (after the nightly analytics), editable in the admin."""

from django.conf import settings
from django.db import migrations

TASK = "analytics.tasks.monthly_reports"


def create(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = crontab_model.objects.get_or_create(
        minute="0", hour="3", day_of_week="*", day_of_month="1", month_of_year="*",
        timezone=settings.TIME_ZONE)
    task_model.objects.get_or_create(
        name="Archive last month's PDF reports (monthly)",
        defaults={"task": TASK, "crontab": crontab, "enabled": True,
                  "description": "The whole registry and every site, in English and Chinese."})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [("analytics", "0003_reports")]
    operations = [migrations.RunPython(create, remove)]
