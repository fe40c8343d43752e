"""`create_api_token USERNAME [--read-only] [--days N] [--name TEXT]`: a key for a script that
calls the REST API, printed once (only its digest is kept)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.api.auth import api_token_create
from registry.models import User


class Command(BaseCommand):
    help = "Make an API token for a user and print its key (shown once; only a digest is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--read-only", action="store_true", help="The token may read, never write."
        )
        parser.add_argument(
            "--days", type=int, default=None, help="Days until it expires (default 90)."
        )
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, username: str, read_only: bool, days: int | None, name: str, **o):
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        token, key = api_token_create(user=user, name=name, read_only=read_only, days=days)
        scope = "read-only" if token.read_only else "read and write"
        self.stdout.write(
            f"Token for {user.username} ({scope}), expires {token.expires_at:%Y-%m-%d %H:%M %Z}:"
        )
        self.stdout.write(key)
