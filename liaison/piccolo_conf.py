"""Piccolo's configuration module (``PICCOLO_CONF=liaison.piccolo_conf``).

``DB`` is resolved lazily so that importing this module never connects anywhere: the engine is the
one ``liaison.db.activate`` bound, or else one built from the ``LIAISON_*`` environment.
"""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

APP_REGISTRY = AppRegistry(apps=["crm.piccolo_app", "campaigns.piccolo_app"])

_engine: Engine | None = None


def use_engine(engine: Engine) -> None:
    global _engine
    _engine = engine


def __getattr__(name: str) -> Engine:
    global _engine
    if name != "DB":
        raise AttributeError(name)
    if _engine is None:
        from liaison.db import engine_for
        from liaison.settings import Settings

        _engine = engine_for(Settings.from_env())
    return _engine
