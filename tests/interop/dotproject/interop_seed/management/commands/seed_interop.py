"""Idempotently create the interop test user and OAuth applications.

    manage.py seed_interop --user alice:alice-password \
        --app pw-client:pw-secret:password \
        --app cc-client:cc-secret:client-credentials

Re-running resets passwords/secrets/grant types to the given values.
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Create/update the interop user and confidential applications (plaintext secrets)."

    def add_arguments(self, parser):
        parser.add_argument("--user", action="append", default=[], help="USERNAME:PASSWORD")
        parser.add_argument("--app", action="append", default=[], help="CLIENT_ID:SECRET:GRANT_TYPE")

    @transaction.atomic
    def handle(self, *args, **opts):
        User = get_user_model()
        Application = get_application_model()
        grants = {g for g, _ in Application.GRANT_TYPES}

        for spec in opts["user"]:
            username, sep, password = spec.partition(":")
            if not sep or not username or not password:
                raise CommandError(f"bad --user {spec!r}, want USERNAME:PASSWORD")
            user, _ = User.objects.get_or_create(username=username)
            if not user.check_password(password) or not user.is_active:
                user.set_password(password)
                user.is_active = True
                user.save()
            self.stdout.write(f"user {username}")

        for spec in opts["app"]:
            parts = spec.split(":")
            if len(parts) != 3 or parts[2] not in grants:
                raise CommandError(f"bad --app {spec!r}, want CLIENT_ID:SECRET:GRANT with GRANT in {sorted(grants)}")
            client_id, secret, grant = parts
            app = Application.objects.filter(client_id=client_id).first() or Application(client_id=client_id)
            app.name = client_id
            app.client_type = Application.CLIENT_CONFIDENTIAL
            app.authorization_grant_type = grant
            # DOT >= 2 hashes client_secret in ClientSecretField.pre_save unless
            # hash_client_secret is False. Plaintext storage is what makes the
            # fixed, known secret work (and is required for HS256 anyway).
            app.hash_client_secret = False
            app.client_secret = secret
            app.redirect_uris = ""
            app.save()
            self.stdout.write(f"application {client_id} ({grant})")
