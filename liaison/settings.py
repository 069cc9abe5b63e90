"""Configuration from ``LIAISON_*`` environment variables, with embedded defaults.

With nothing set, Liaison runs on one machine: a SQLite file under ``var/``, file-backed sessions
and a secret key generated once and kept in ``var/secret_key``. ``LIAISON_ENV=production`` refuses
to start without a real secret key, HTTPS-only cookies and an ``https://`` base URL.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "test", "production")
EMAIL_BACKENDS = ("outbox", "sendgrid")
PASSWORD_HASH_PROFILES = ("rfc9106_low_memory", "rfc9106_high_memory", "cheapest")
MIN_SECRET_KEY_LENGTH = 32


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _int(env: Mapping[str, str], name: str, default: int, maximum: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not re.fullmatch(r"-?[0-9]+", raw.strip()):
        raise ConfigError(f"{name}={raw!r} is not a whole number")
    value = int(raw.strip())
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} must be between {minimum} and {maximum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def _line(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip()
    if re.search(r"[\x00-\x1f\x7f]", value) or len(value) > 200:
        raise ConfigError(f"{name} must be one line of at most 200 characters")
    return value


def _email(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ConfigError(f"{name}={value!r} is not an email address")
    return value


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    return value


def _check_public_key(value: str) -> None:
    from campaigns.events import load_public_key

    try:
        load_public_key(value)
    except ValueError as error:
        raise ConfigError(f"LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY: {error}") from None


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    database_pool_max: int = 10
    sqlite_busy_timeout_seconds: int = 10
    secret_key: str | None = None
    redis_url: str | None = None
    base_url: str = "http://127.0.0.1:8000"
    cookie_secure: bool = False
    session_idle_minutes: int = 60
    session_absolute_hours: int = 12
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window_minutes: int = 15
    password_hash_profile: str = "rfc9106_low_memory"
    forwarded_allow_ips: str = "127.0.0.1"
    email_backend: str = "outbox"
    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout_seconds: int = 10
    sendgrid_webhook_public_key: str | None = None
    sendgrid_asm_group_id: int | None = None
    webhook_tolerance_seconds: int = 600
    from_email: str = "outreach@example.org"
    from_name: str = "Cancer Center Outreach"
    reply_to: str = ""
    program_name: str = "Cancer Center"
    postal_address: str = ""
    soft_bounce_threshold: int = 3
    claim_timeout_seconds: int = 600
    run_worker: bool = True

    @property
    def production(self) -> bool:
        return self.env == "production"

    def mail_config(self):
        """What the campaigns package needs to send."""
        from campaigns.config import MailConfig

        return MailConfig(
            base_url=self.base_url, secret_key=self.resolve_secret_key(), from_email=self.from_email,
            from_name=self.from_name, reply_to=self.reply_to, program_name=self.program_name,
            postal_address=self.postal_address, backend=self.email_backend,
            soft_bounce_threshold=self.soft_bounce_threshold, webhook_tolerance_seconds=self.webhook_tolerance_seconds,
            claim_timeout_seconds=self.claim_timeout_seconds,
        )

    @property
    def sessions_dir(self) -> Path:
        return self.var_dir / "sessions"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every ``LIAISON_*`` variable; raises ConfigError naming the bad one."""
        env = os.environ if env is None else env
        environment = _choice(env, "LIAISON_ENV", "development", ENVIRONMENTS)
        production = environment == "production"
        var_dir = Path(env.get("LIAISON_VAR_DIR") or PROJECT_ROOT / "var").expanduser().resolve()
        if var_dir.exists() and not var_dir.is_dir():
            raise ConfigError(f"LIAISON_VAR_DIR={str(var_dir)!r} is a file, not a folder")
        database_url = (env.get("LIAISON_DATABASE_URL") or "").strip() or (
            f"sqlite:///{var_dir / 'liaison.sqlite3'}"
        )
        check_database_url(database_url)
        settings = cls(
            env=environment,
            var_dir=var_dir,
            database_url=database_url,
            database_pool_max=_int(env, "LIAISON_DATABASE_POOL_MAX", 10, maximum=500),
            sqlite_busy_timeout_seconds=_int(env, "LIAISON_SQLITE_BUSY_TIMEOUT_SECONDS", 10, maximum=600),
            secret_key=(env.get("LIAISON_SECRET_KEY") or None),
            redis_url=check_redis_url(env.get("LIAISON_REDIS_URL") or None),
            base_url=(env.get("LIAISON_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            cookie_secure=_bool(env, "LIAISON_COOKIE_SECURE", production),
            session_idle_minutes=_int(env, "LIAISON_SESSION_IDLE_MINUTES", 60, maximum=7 * 24 * 60),
            session_absolute_hours=_int(env, "LIAISON_SESSION_ABSOLUTE_HOURS", 12, maximum=30 * 24),
            login_max_failures_per_account=_int(
                env, "LIAISON_LOGIN_MAX_FAILURES_PER_ACCOUNT", 5, maximum=1000
            ),
            login_max_failures_per_address=_int(
                env, "LIAISON_LOGIN_MAX_FAILURES_PER_ADDRESS", 20, maximum=100_000
            ),
            login_failure_window_minutes=_int(
                env, "LIAISON_LOGIN_FAILURE_WINDOW_MINUTES", 15, maximum=24 * 60
            ),
            password_hash_profile=_choice(
                env, "LIAISON_PASSWORD_HASH", "rfc9106_low_memory", PASSWORD_HASH_PROFILES
            ),
            forwarded_allow_ips=env.get("LIAISON_FORWARDED_ALLOW_IPS") or "127.0.0.1",
            email_backend=_choice(env, "LIAISON_EMAIL_BACKEND", "outbox", EMAIL_BACKENDS),
            sendgrid_api_key=(env.get("LIAISON_SENDGRID_API_KEY") or "").strip() or None,
            sendgrid_host=_http_url(env, "LIAISON_SENDGRID_HOST", "https://api.sendgrid.com"),
            sendgrid_timeout_seconds=_int(env, "LIAISON_SENDGRID_TIMEOUT_SECONDS", 10, maximum=120),
            sendgrid_webhook_public_key=(env.get("LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY") or "").strip() or None,
            sendgrid_asm_group_id=(
                _int(env, "LIAISON_SENDGRID_ASM_GROUP_ID", 0, maximum=10**9)
                if (env.get("LIAISON_SENDGRID_ASM_GROUP_ID") or "").strip() else None
            ),
            webhook_tolerance_seconds=_int(env, "LIAISON_WEBHOOK_TOLERANCE_SECONDS", 600, maximum=86_400, minimum=10),
            from_email=_email(env, "LIAISON_FROM_EMAIL", "outreach@example.org"),
            from_name=_line(env, "LIAISON_FROM_NAME", "Cancer Center Outreach"),
            reply_to=_email(env, "LIAISON_REPLY_TO", ""),
            program_name=_line(env, "LIAISON_PROGRAM_NAME", "Cancer Center"),
            postal_address=(env.get("LIAISON_POSTAL_ADDRESS") or "").replace("\\n", "\n").strip()[:500],
            soft_bounce_threshold=_int(env, "LIAISON_SOFT_BOUNCE_THRESHOLD", 3, maximum=100),
            claim_timeout_seconds=_int(env, "LIAISON_CLAIM_TIMEOUT_SECONDS", 600, maximum=86_400, minimum=60),
            run_worker=_bool(env, "LIAISON_RUN_WORKER", True),
        )
        if settings.email_backend == "sendgrid" and not settings.sendgrid_api_key:
            raise ConfigError("LIAISON_EMAIL_BACKEND=sendgrid needs LIAISON_SENDGRID_API_KEY")
        if settings.sendgrid_webhook_public_key:
            _check_public_key(settings.sendgrid_webhook_public_key)
        if production:
            settings.check_production()
        return settings

    def check_production(self) -> None:
        """Refuse the settings that are fine on a laptop and unsafe in front of real users."""
        key = self.secret_key or ""
        if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 10:
            raise ConfigError(
                "LIAISON_ENV=production needs LIAISON_SECRET_KEY: a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters (for example: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if not self.cookie_secure:
            raise ConfigError(
                "LIAISON_ENV=production needs HTTPS-only cookies: remove LIAISON_COOKIE_SECURE=false"
            )
        if not self.base_url.startswith("https://"):
            raise ConfigError(
                f"LIAISON_ENV=production needs an https:// LIAISON_BASE_URL (got {self.base_url!r})"
            )
        if self.email_backend == "sendgrid" and not self.sendgrid_webhook_public_key:
            raise ConfigError(
                "LIAISON_ENV=production with SendGrid needs LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY (the signed "
                "Event Webhook's verification key) so that forged events are refused"
            )
        if self.email_backend == "sendgrid" and not self.postal_address:
            raise ConfigError("LIAISON_ENV=production with SendGrid needs LIAISON_POSTAL_ADDRESS (shown in every email)")
        if self.password_hash_profile == "cheapest":
            raise ConfigError("LIAISON_PASSWORD_HASH=cheapest is for tests and refused in production")

    def resolve_secret_key(self) -> str:
        """The configured key, or (outside production) the one kept in ``var/secret_key``."""
        if self.secret_key:
            return self.secret_key
        if self.production:
            raise ConfigError("LIAISON_SECRET_KEY is required in production")
        path = self.var_dir / "secret_key"
        if path.exists():
            try:
                key = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(
                    f"{path} cannot be read ({error}); delete it and a new key is generated"
                ) from None
            if len(key) >= MIN_SECRET_KEY_LENGTH:
                return key
        self.var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # Created with owner-only permissions before anything is written to it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
        return key


def check_database_url(url: str) -> None:
    """Accept ``sqlite:///path`` and ``postgresql://…``; anything else is a configuration error."""
    if re.search(r"[\x00-\x1f\x7f]", url) or "%00" in url:
        raise ConfigError("LIAISON_DATABASE_URL holds control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        raise ConfigError(f"LIAISON_DATABASE_URL={redact_url(url)!r} is not a valid URL ({error})") from None
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConfigError(
                f"LIAISON_DATABASE_URL={url!r} has no file path (use sqlite:///path/to/liaison.sqlite3)"
            )
        return
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"LIAISON_DATABASE_URL={redact_url(url)!r} names no host")
        return
    raise ConfigError(
        f"LIAISON_DATABASE_URL scheme {parts.scheme or '(none)'!r} is not supported "
        "(use sqlite:///path or postgresql://user@host:port/database)"
    )


def check_redis_url(url: str | None) -> str | None:
    if url is None:
        return None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"LIAISON_REDIS_URL={redact_url(url)!r} is not a Redis URL (use redis://host:6379/0)"
        )
    return url


def redact_url(url: str) -> str:
    """The URL with any password (in the user part or the query) replaced, safe for messages."""
    url = re.sub(r"(?i)(password=)[^&]*", r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)
    if password:
        netloc = parts.netloc.replace(f":{password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
