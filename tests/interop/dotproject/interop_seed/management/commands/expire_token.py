"""Make an access token (or refresh token) expired, for "expired token" tests.

    manage.py expire_token TOKEN [--seconds-ago N]

DOT looks tokens up by sha256(token) (token_checksum), exactly like
IntrospectTokenView does, so this works whatever the token storage mode.
"""
import hashlib
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from oauth2_provider.models import get_access_token_model


class Command(BaseCommand):
    help = "Set an access token's expires to the past."

    def add_arguments(self, parser):
        parser.add_argument("token")
        parser.add_argument("--seconds-ago", type=int, default=60)

    def handle(self, *args, **opts):
        checksum = hashlib.sha256(opts["token"].encode("utf-8")).hexdigest()
        expires = timezone.now() - timedelta(seconds=opts["seconds_ago"])
        n = get_access_token_model().objects.filter(token_checksum=checksum).update(expires=expires)
        if n == 0:
            raise CommandError("no such access token")
        self.stdout.write(f"expired {n} access token(s); expires={expires.isoformat()}")
