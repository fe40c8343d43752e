from django.core.management.base import BaseCommand

from registry import quality
from registry.clock import today


class Command(BaseCommand):
    help = "Open and close every patient's data-quality queries (run nightly by Celery beat)."

    def handle(self, *args, **options) -> None:
        count = quality.refresh_all(today=today())
        patients = "patient" if count == 1 else "patients"
        self.stdout.write(f"Data-quality queries refreshed for {count} {patients}.")
