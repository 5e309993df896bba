"""Configuration: one table of settings, read once from the environment and passed down as a value.

- :mod:`settings.table`: every setting declared once (environment variable, default, parser,
  section, one line of documentation) as an attribute of :class:`Settings`; reading the
  environment and `musicplayground config` come from it;
- :mod:`settings.values`: the parsers of single values;
- :mod:`settings.markdown`: the README's configuration table (``python -m settings --markdown``);
- :mod:`settings.secret`: the generated signing key of the embedded default.

A leaf: imports nothing internal. Nothing here opens a connection or touches the disk except
:func:`load_or_create_secret`, which the composition root calls explicitly.
"""

from __future__ import annotations

from settings.markdown import README_TABLE_END, README_TABLE_START, markdown_table
from settings.secret import load_or_create_secret
from settings.table import DEFAULT_PORT, FIELDS, SECTIONS, SETTING_FIELDS, Field, Settings
from settings.values import ConfigError, mask_url

__all__ = [
    "DEFAULT_PORT",
    "FIELDS",
    "README_TABLE_END",
    "README_TABLE_START",
    "SECTIONS",
    "SETTING_FIELDS",
    "ConfigError",
    "Field",
    "Settings",
    "load_or_create_secret",
    "markdown_table",
    "mask_url",
]
