"""mta.config - main.cf and master.cf in Postfix syntax

SYNOPSIS
    from mta.config import load_config, ConfigError
    cfg = load_config(None)          # -c, MTA_CONFIG_DIR, or the default instance

DESCRIPTION
    params.py is the table of parameters; main_cf.py reads and edits
    main.cf; expand.py does $name expansion; master_cf.py reads master.cf;
    instance.py creates the embedded default instance; config.py puts
    them together into the effective configuration; validate.py finds
    every problem of both files; unimplemented.py lists the parameters
    that are declared but not acted on yet.

SECURITY
    Reads the administrator's files only.
"""

from mta.config.config import Config, load_config, resolve_config_dir
from mta.config.errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "resolve_config_dir"]
