"""Build script: compiles every mta/_speedups/*.pyx into an extension.

MTA_NO_EXTENSIONS=1 gives a pure-Python build; MTA_DEBUG=1 a traced one.
Cython (a build requirement) regenerates stale .c files; without Cython the
shipped .c files are compiled as they are. --cython-always forces
regeneration, --cython-annotate writes the HTML annotation. Cython and
the C compiler run one job per CPU (build_ext --parallel N overrides).
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXT = os.environ.get("MTA_NO_EXTENSIONS") == "1"
DEBUG = os.environ.get("MTA_DEBUG") == "1"
ALWAYS = "--cython-always" in sys.argv
ANNOTATE = "--cython-annotate" in sys.argv
for flag in ("--cython-always", "--cython-annotate"):
    while flag in sys.argv:
        sys.argv.remove(flag)


JOBS = os.cpu_count() or 1  # parallel Cython and compiler jobs


class ParallelBuildExt(build_ext):
    """build_ext that compiles the kernels in parallel unless --parallel says otherwise."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = JOBS


def extensions() -> list:
    if NO_EXT:
        return []
    pyx = sorted(glob.glob("mta/_speedups/*.pyx"))
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    if cythonize is not None:
        exts = [Extension(p[:-4].replace("/", "."), [p], define_macros=macros) for p in pyx]
        return cythonize(
            exts,
            nthreads=JOBS if JOBS > 1 else 0,
            language_level=3,
            annotate=ANNOTATE,
            force=ALWAYS or DEBUG,
            compile_time_env={"MTA_DEBUG": DEBUG},
            compiler_directives={
                "boundscheck": DEBUG,
                "wraparound": False,
                "linetrace": DEBUG,
            },
        )
    return [Extension(p[:-4].replace("/", "."), [p[:-4] + ".c"]) for p in pyx]


setup(ext_modules=extensions(), cmdclass={"build_ext": ParallelBuildExt})
