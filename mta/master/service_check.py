"""master.service_check - build what a service builds from its configuration, to check it

SYNOPSIS
    from mta.master.service_check import check_service, service_problems
    check_service("smtpd", cfg)                  # raises ConfigError, as smtpd would
    problems = service_problems(services, cfg)   # every master.cf service, as Problems

DESCRIPTION
    Some services parse more than parameter values when they start:
    smtpd turns its restriction lists into operations, opens the tables
    they name and parses mynetworks. SERVICE_CHECKS names, for each such
    master.cf command, the constructor the service itself uses; building
    it is the check, so "mta check" and the service can never disagree.

    check_service() is what a child runs before it serves (a failure
    makes it fall back to the master's snapshot, see snapshot.py);
    service_problems() is what "mta check", "mta start" and "mta reload"
    run for each service in master.cf, with that service's -o overrides.

SECURITY
    Opens the tables the configuration names, read-only.
"""

from __future__ import annotations

import importlib

from mta.config import ConfigError
from mta.config.master_cf import ServiceEntry
from mta.config.validate import Problem
from mta.maps import MapError

# master.cf command -> (module, callable taking the Config); the callable raises ConfigError
SERVICE_CHECKS: dict[str, tuple[str, str]] = {
    "smtpd": ("mta.smtpd.checks", "SmtpdChecks"),
}


def check_service(command: str, cfg) -> None:
    """Build what the service command builds from cfg; ConfigError when it cannot."""
    target = SERVICE_CHECKS.get(command)
    if target is None:
        return
    module, name = target
    build = getattr(importlib.import_module(module), name)
    try:
        build(cfg)
    except (MapError, ValueError, OSError) as exc:
        raise ConfigError(str(exc), path=cfg.master_cf) from None


def service_problems(services: list[ServiceEntry], cfg) -> list[Problem]:
    """Problems check_service() finds for each service, each reported once."""
    out: list[Problem] = []
    seen: set[str] = set()
    for s in services:
        if s.command not in SERVICE_CHECKS:
            continue
        view = cfg.with_overrides(s.overrides, where=(s.path, s.line)) if s.overrides else cfg
        try:
            check_service(s.command, view)
        except ConfigError as exc:
            problem = Problem.from_error(exc)
            if exc.path == cfg.master_cf and exc.line is None:
                problem = Problem(f"service {s.key}: {exc.message}", s.path, s.line)
            if str(problem) not in seen:
                seen.add(str(problem))
                out.append(problem)
    return out
