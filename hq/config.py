"""The headquarters config (``hq.yaml``): the broker, the database, the chain's stores, the web page.

Strict pydantic models, as the kiosk's (:mod:`kiosk.config`): a bad config is a
:class:`~edge.errors.ConfigError` with one line per problem naming the file and the field. Secrets
(broker password, database DSN) come from files or ``$CREDENTIALS_DIRECTORY``, never from the YAML.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from edge.contracts import ID_PATTERN
from edge.errors import ConfigError
from edge.validation import error_lines, Strict
from kiosk.chain import check_broker_url
from kiosk.config import WebConfig, _resolve

MAX_CONFIG_BYTES = 4 << 20


class BrokerConfig(Strict):
    """Where the stores' reports arrive, and how headquarters logs in to read them."""

    url: str = Field(description="The broker, mqtts://host:8883 (mqtt:// plaintext only with --insecure).")
    user: str = Field("hq", description="Headquarters' broker user (the ACL lets it read gemsight/#).")
    password_file: str = Field(description="File with headquarters' broker password (or a credential name).")
    ca_file: str | None = Field(None, description="CA certificate of the broker (default: the system's CAs).")
    client_id: str = Field("gemsight-hq", pattern=ID_PATTERN, description="MQTT client id: a persistent "
                                                                          "session, so the broker keeps what "
                                                                          "arrives while headquarters is down.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_broker_url(v)    # the same rule as the kiosk's chain: section


class StoreEntry(Strict):
    """One store of the chain (its id is its broker user and topic prefix)."""

    id: str = Field(pattern=ID_PATTERN, description="Store id, as in its kiosk's chain.store_id.")
    name: str = Field(min_length=1, max_length=80, description="Name shown on the page.")
    region: str = Field("", max_length=80, description="Region (regional managers are given stores).")


class HqConfig(Strict):
    """The whole ``hq.yaml``."""

    state_dir: Path = Field(Path("/var/lib/gemsight/hq"), description="Session key of the web page.")
    database_file: str = Field(description="File holding the PostgreSQL DSN, e.g. "
                                           "postgresql://gemsight-hq@db.example/gemsight (or a credential name).")
    broker: BrokerConfig = Field(description="The chain's MQTT broker.")
    stores: tuple[StoreEntry, ...] = Field(description="Every store of the chain; messages from other ids are "
                                                       "refused and counted.")
    device_down_after_s: float = Field(180.0, gt=0, description="A device with no health report for this long "
                                                                "is shown as down.")
    web: WebConfig = Field(default_factory=lambda: WebConfig(port=8480), description="Web page and API.")

    @field_validator("stores")
    @classmethod
    def _unique(cls, v: tuple[StoreEntry, ...]) -> tuple[StoreEntry, ...]:
        if not v:
            raise ValueError("at least one store is needed")
        ids = [s.id for s in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"store ids repeat: {dupes}")
        return v


def parse_config(data: Any, source: str = "hq.yaml", base_dir: str | Path = ".") -> HqConfig:
    """Validate a parsed YAML document; files resolve against ``base_dir``.

    Raises:
        ConfigError: one line per problem, each naming ``source`` and the field path.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = HqConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc, source)) from exc
    base = Path(base_dir)
    broker = cfg.broker.model_copy(update={"password_file": _resolve(base, cfg.broker.password_file),
                                           "ca_file": _resolve(base, cfg.broker.ca_file)})
    state_dir = cfg.state_dir if cfg.state_dir.is_absolute() else base / cfg.state_dir
    return cfg.model_copy(update={"broker": broker, "state_dir": state_dir,
                                  "database_file": _resolve(base, cfg.database_file)})


def load_config(path: str | Path) -> HqConfig:
    """Read and validate ``hq.yaml`` (missing, too large, not UTF-8, not YAML or invalid: one-line errors)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: too large for a headquarters config (limit {MAX_CONFIG_BYTES} bytes)")
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: headquarters config not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read headquarters config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return parse_config(data, str(path), path.parent)


EXAMPLE = """\
# gemsight headquarters (gemsight-hq example-config): the chain's broker, database and stores.
state_dir: /var/lib/gemsight/hq
# The PostgreSQL DSN, in a file (a bare name is read from $CREDENTIALS_DIRECTORY).
database_file: hq-database.dsn
broker:
  url: mqtts://broker.example:8883
  user: hq
  password_file: hq-broker.password
  ca_file: /etc/gemsight/chain-ca.pem
stores:
  - {id: zrh-01, name: "Zürich Bahnhofstrasse", region: east}
  - {id: gva-02, name: "Genève Rhône", region: west}
device_down_after_s: 180
web:
  host: 127.0.0.1
  port: 8480
"""
