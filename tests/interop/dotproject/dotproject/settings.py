"""Settings for the Django OAuth Toolkit (DOT) authorization server used by the
tower-introspection interop tests. Test fixture only: never deploy this.

All mutable state (sqlite database, secret key, OIDC signing key) lives in the
run directory, ``$DOT_RUN_DIR`` (dot.sh sets it to tests/interop/.run).
"""
import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("DOT_RUN_DIR", BASE_DIR.parent / ".run")).resolve()
RUN_DIR.mkdir(parents=True, exist_ok=True)


def _atomic_write(path, data):
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # atomic: concurrent first runs cannot see half a file


def _persistent(name, make):
    path = RUN_DIR / name
    if not path.exists():
        _atomic_write(path, make())
    return path.read_text()


def _make_rsa_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()


SECRET_KEY = _persistent("django_secret_key", lambda: secrets.token_urlsafe(50)).strip()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "interop_seed",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "dotproject.urls"
WSGI_APPLICATION = "dotproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": RUN_DIR / "db.sqlite3",
        "OPTIONS": {
            # runserver is threaded and dot.sh expire-token writes from another
            # process: WAL + a generous busy timeout avoid "database is locked".
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's testing docs recommend a fast hasher for test suites; it only affects
# how alice's password is stored, not any OAuth behaviour.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

OAUTH2_PROVIDER = {
    "SCOPES": {
        "read": "Reading scope",
        "write": "Writing scope",
        "admin": "Admin scope",
        "introspection": "Introspect tokens",
    },
    "ACCESS_TOKEN_EXPIRE_SECONDS": 36000,
    "PKCE_REQUIRED": False,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    # OIDC is on only so that /o/.well-known/openid-configuration publishes an
    # issuer; the signing key is generated once into the run directory.
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": _persistent("oidc_rsa_private_key.pem", _make_rsa_pem),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "oauth2_provider": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
}
