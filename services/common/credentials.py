"""Where the tokens come from: the one a service checks, the one a client sends, and the caller's.

No admin surface is ever open. `endpoints.admin_token` wins when set; otherwise, on loopback, the
services and the CLI on one machine share `$FEEDRANK_DATA_DIR/admin.token` (created on first use,
mode 0600), and a service bound beyond loopback refuses to start without a configured token.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from services.common.config import SECRETS_DIR_ENV, Settings
from services.common.errors import ErrorKind, FeedrankError

ADMIN_TOKEN_FILE = "admin.token"

# The bearer token the current call arrived with, so a service's own calls on its behalf carry the
# caller's rights (an admin's Search may name a version; an anonymous one may not).
_CALLER_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("feedrank_caller_token", default="")


def admin_token_path(settings: Settings) -> Path:
    return settings.data_path / ADMIN_TOKEN_FILE


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or "" (every interface): not provably loopback


def serving_admin_token(settings: Settings, bind_host: str) -> str:
    """The admin token a service bound to `bind_host` checks; never empty."""
    configured = settings.endpoints.admin_token
    if configured:
        return configured
    if not is_loopback(bind_host):
        raise FeedrankError(
            ErrorKind.FAILED_PRECONDITION,
            f"binding {bind_host} (beyond loopback) needs an admin token: set FEEDRANK_ENDPOINTS__ADMIN_TOKEN "
            "(see docs/security.md)", "endpoints.admin_token",
        )
    return ensure_token_file(admin_token_path(settings))


def client_admin_token(settings: Settings) -> str:
    """The admin token an operator's client sends: the setting, else the data dir's token file, else none."""
    if settings.endpoints.admin_token:
        return settings.endpoints.admin_token
    try:
        return admin_token_path(settings).read_text().strip()
    except FileNotFoundError:
        return ""


def provider_key(name: str) -> str:
    """A third-party API key: environment variable `name`, else the file `name` in FEEDRANK_SECRETS_DIR
    (where Kubernetes mounts the Secret; empty when neither is set)."""
    value = os.environ.get(name, "").strip()
    folder = os.environ.get(SECRETS_DIR_ENV)
    if value or not folder:
        return value
    try:
        return (Path(folder) / name).read_text().strip()
    except FileNotFoundError:
        return ""


def ensure_token_file(path: Path) -> str:
    """The token in `path`, created (random, mode 0600) when absent; concurrent starters agree on one."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(staged, path)  # fails if another process won the race: then its token is the one
        except FileExistsError:
            pass
    finally:
        staged.unlink(missing_ok=True)
    token = path.read_text().strip()
    if not token:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"{path} is empty: delete it to make a new admin token")
    return token


def set_caller_token(token: str) -> contextvars.Token:
    return _CALLER_TOKEN.set(token)


def caller_token() -> str:
    return _CALLER_TOKEN.get()


def bearer_token(header: str | None) -> str:
    """'Bearer abc' -> 'abc'; anything else -> ''."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def operator_token(settings: Settings) -> str:
    """What the CLI sends: the admin token it can find (it is accepted for reading calls too), else the read token."""
    return client_admin_token(settings) or settings.endpoints.read_token


def service_token(read_token: str) -> Callable[[], str]:
    """What a service's own outgoing call carries: the token of the call it acts for (the caller's rights,
    no more), else the read token (background work such as a training run's candidate searches)."""
    return lambda: caller_token() or read_token
