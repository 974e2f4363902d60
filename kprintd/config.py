"""Settings: every knob of kprintd, read from KPRINTD_* environment variables or an env file.

Owns parsing and validating configuration (pydantic-settings) and turning a bad setting into one
clear line that names the variable. The systemd unit loads /etc/kprintd/kprintd.env; any other
file can be named with KPRINTD_ENV_FILE or `kprintd --env-file`.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Annotated, Literal

import psycopg
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "KPRINTD_"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


def _default_daemon_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Settings(BaseSettings):
    """kprintd's configuration. Field `x` is read from the environment variable KPRINTD_X."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(description="libpq URL or conninfo string of the POS database")

    # Scope: which tickets this daemon serves. Empty means every store and brand.
    store_id: uuid.UUID | None = None
    brand_ids: Annotated[tuple[uuid.UUID, ...], NoDecode] = ()

    daemon_id: str = Field(default_factory=_default_daemon_id)

    # Printers on a LAN answer in milliseconds; two seconds tells "down" from "busy".
    printer_connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    printer_send_timeout_s: float = Field(default=2.0, gt=0, le=120)

    lease_s: float = Field(default=30.0, gt=0, le=3600)
    sweep_interval_s: float = Field(default=30.0, gt=0, le=3600)
    retry_base_delay_s: float = Field(default=2.0, gt=0, le=3600)
    retry_max_delay_s: float = Field(default=30.0, gt=0, le=86400)
    # A paper change or a printer power-cycle takes minutes; attempts that cannot have printed
    # anything do not use up a ticket's retries for this long.
    unreachable_grace_s: float = Field(default=900.0, ge=0, le=86400)
    breaker_failure_threshold: int = Field(default=1, ge=1, le=100)
    breaker_open_s: float = Field(default=15.0, gt=0, le=3600)
    shutdown_timeout_s: float = Field(default=10.0, gt=0, le=300)

    health_interval_s: float = Field(default=60.0, gt=0, le=86400)
    health_retention_days: int = Field(default=30, ge=1, le=3650)
    # Final tickets, their items and log rows older than this are purged daily (kitchen_purge,
    # sql/schema/44_admin.sql); unset: kept for ever. 7 is kitchen_purge's own floor.
    ticket_retention_days: int | None = Field(default=None, ge=7, le=3650)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _valid_conninfo(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        try:
            psycopg.conninfo.conninfo_to_dict(value)
        except psycopg.ProgrammingError as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(f"not a libpq URL or conninfo string ({reason})") from None
        return value

    @field_validator("brand_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    variable = ENV_PREFIX + field.upper()
    message = "is not set" if first["type"] == "missing" else first["msg"]
    message = " ".join(message.removeprefix("Value error, ").split())
    return f"{variable} {message}"


def load_settings(env_file: Path | str | None = None) -> Settings:
    """Read the settings, or raise ConfigError with one line naming the bad variable."""
    env_file = env_file or os.environ.get(ENV_PREFIX + "ENV_FILE") or None
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigError(f"env file {env_file} does not exist")
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
