"""master.snapshot - the configuration the master validated last, for its children

SYNOPSIS
    from mta.master.snapshot import read_config, write_snapshot, load_snapshot
    cfg, main_text, master_text = read_config("/etc/mta")     # in the master
    path = write_snapshot(cfg, main_text, master_text)          # after it validated
    cfg = load_snapshot(path, "/etc/mta")                       # in a child

DESCRIPTION
    The master reads main.cf and master.cf once per start or reload
    (read_config), validates what it read and, when it takes the new
    configuration, writes the same two texts to the snapshot directory
    $queue_directory/$process_id_directory/config (write_snapshot; each
    file through a temporary file and a rename, so a reader sees one
    whole version; not fsynced: after a crash the next start writes it
    again). Its children learn the directory from SNAPSHOT_ENV in their
    environment.

    A child reads the live main.cf, as in Postfix, so that a valid edit
    reaches new processes without a reload. When the live files do not
    validate (an edit without reload, or a reload the master refused),
    the child runs on the snapshot instead (load_snapshot) and logs one
    warning naming the file, line and problem, so a typo never takes a
    running service down.

SECURITY
    Written by the master, possibly as root, in a directory of mode
    0755 that only the master writes; each copy has its original's mode
    (at most 0644), so a main.cf readable only by root stays so. Read by
    children before they drop privileges.
"""

from __future__ import annotations

import os

from mta.config import Config, ConfigError
from mta.config.main_cf import parse_main_cf, write_atomically
from mta.queue import paths

SNAPSHOT_ENV = "MTA_CONFIG_SNAPSHOT"  # the children's pointer to the snapshot directory
SNAPSHOT_DIR = "config"  # under the pid directory
SNAPSHOT_DIR_MODE = 0o755
SNAPSHOT_FILE_MODE = 0o644


def _read(path: str, missing_ok: bool) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise ConfigError("cannot read: No such file or directory", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc


def read_config(config_dir: str) -> tuple[Config, str, str]:
    """Read main.cf and master.cf once: (Config of that main.cf, main text, master text)."""
    main_cf = os.path.join(config_dir, "main.cf")
    main_text = _read(main_cf, missing_ok=True)
    cfg = Config(config_dir, parse_main_cf(main_text, main_cf))
    master_text = _read(cfg.master_cf, missing_ok=False)
    return cfg, main_text, master_text


def _mode(original: str) -> int:
    """The copy is never more readable than the file it copies."""
    try:
        return os.stat(original).st_mode & SNAPSHOT_FILE_MODE
    except OSError:
        return SNAPSHOT_FILE_MODE


def snapshot_path(cfg) -> str:
    return os.path.join(paths.pid_directory(cfg), SNAPSHOT_DIR)


def write_snapshot(cfg, main_text: str, master_text: str) -> str:
    """Keep the validated texts where children find them; return the directory."""
    directory = snapshot_path(cfg)
    try:
        os.mkdir(directory, SNAPSHOT_DIR_MODE)
    except FileExistsError:
        pass
    # master.cf first: a child that reads between the two sees the older main.cf
    write_atomically(os.path.join(directory, "master.cf"), master_text, _mode(cfg.master_cf))
    write_atomically(os.path.join(directory, "main.cf"), main_text, _mode(cfg.main_cf))
    return directory


def load_snapshot(directory: str, config_dir: str) -> Config:
    """The Config of the snapshot in directory, for the instance in config_dir."""
    main_cf = os.path.join(directory, "main.cf")
    entries = parse_main_cf(_read(main_cf, missing_ok=False), main_cf)
    return Config(config_dir, entries, master_cf=os.path.join(directory, "master.cf"))
