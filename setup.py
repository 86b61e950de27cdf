"""Builds Callbox's compiled media core and installs the Python packages.

The core is a pybind11 extension (C++20). The C libraries it links are found
with pkg-config. ``CALLBOX_SANITIZE=1`` builds a second flavour of the core,
``core._core_sanitize``, with AddressSanitizer and UndefinedBehaviorSanitizer;
``make test`` runs the core's tests once more against it. Cython modules (the
bindings to telephony C libraries in ``hw/``) are compiled from any ``.pyx``
file found there.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent

# pkg-config names of the C libraries the media core links.
CORE_LIBRARIES = ["opus", "spandsp", "libsrtp2", "lame", "libbcg729", "liburing"]

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
SANITIZE = os.environ.get("CALLBOX_SANITIZE", "") == "1"
SANITIZER_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]


def needs_recompile(obj: str, src: str) -> bool:
    """Whether ``obj`` is older than ``src`` or any header it included.

    The compiler writes each object's dependencies next to it (``-MMD``), so a
    rebuild compiles only what a change reaches, headers included.
    """
    target = Path(obj)
    depfile = target.with_suffix(".d")
    if not target.exists() or not depfile.exists():
        return True
    built = target.stat().st_mtime
    deps = depfile.read_text().replace("\\\n", " ").split(":", 1)[-1].split()
    try:
        return any(Path(dep).stat().st_mtime > built for dep in [src, *deps])
    except FileNotFoundError:
        return True


# Compile in parallel (CALLBOX_BUILD_JOBS, default: every core) only what a change reaches.
ParallelCompile("CALLBOX_BUILD_JOBS", default=0, needs_recompile=needs_recompile).install()


def pkg_config(packages: list[str]) -> tuple[list[str], list[str]]:
    """Return (compile flags, link flags) for ``packages``, or exit naming the missing one."""
    for package in packages:
        if subprocess.run(["pkg-config", "--exists", package], check=False).returncode != 0:
            sys.exit(
                f"setup.py: the C library '{package}' was not found by pkg-config; "
                "run scripts/install-system-deps to install the -dev packages"
            )
    cflags = subprocess.check_output(["pkg-config", "--cflags", *packages], text=True)
    libs = subprocess.check_output(["pkg-config", "--libs", *packages], text=True)
    return shlex.split(cflags), shlex.split(libs)


def pkg_version(package: str) -> str:
    """The version pkg-config reports for ``package`` (the one the core is built against)."""
    return subprocess.check_output(["pkg-config", "--modversion", package], text=True).strip()


def core_extension() -> Extension:
    """The media core: every .cpp under core/, one pybind11 module."""
    sources = sorted(str(p.relative_to(HERE)) for p in (HERE / "core").rglob("*.cpp"))
    headers = sorted(str(p.relative_to(HERE)) for p in (HERE / "core").rglob("*.h"))
    cflags, libs = pkg_config(CORE_LIBRARIES)
    module = "_core_sanitize" if SANITIZE else "_core"
    compile_args = ["-O2", "-MMD", *WARNINGS, *cflags]
    link_args = [*libs]
    if SANITIZE:
        compile_args = ["-O1", "-g", "-MMD", *WARNINGS, *SANITIZER_FLAGS, *cflags]
        link_args = [*SANITIZER_FLAGS, *libs]
    versions = [
        (f"CALLBOX_PKG_{re.sub(r'[^A-Z0-9]', '_', p.upper())}_VERSION", f'"{pkg_version(p)}"')
        for p in CORE_LIBRARIES
    ]
    return Pybind11Extension(
        f"core.{module}",
        sources,
        depends=headers,
        include_dirs=[str(HERE / "core")],
        define_macros=[("CALLBOX_CORE_MODULE", module), *versions],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        cxx_std=20,
    )


def cython_extensions() -> list[Extension]:
    """Cython bindings under hw/ (none yet; E1 signalling libraries will add them)."""
    pyx = sorted((HERE / "hw").rglob("*.pyx"))
    if not pyx:
        return []
    from Cython.Build import cythonize

    modules = [
        Extension(".".join(p.relative_to(HERE).with_suffix("").parts), [str(p.relative_to(HERE))])
        for p in pyx
    ]
    return list(cythonize(modules, compiler_directives={"language_level": "3"}))


setup(
    ext_modules=[core_extension(), *cython_extensions()],
    cmdclass={"build_ext": build_ext},
)
