"""Liaison's composition root: settings, database engine, app factory and command line."""

import os

# Piccolo looks its configuration up by module name; point it at ours before any table is used.
os.environ.setdefault("PICCOLO_CONF", "liaison.piccolo_conf")
