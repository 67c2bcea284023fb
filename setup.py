"""The compiled kernels (bigresample/_kernel.c: the general path's and the separable engine's); the rest
of the project's metadata is in pyproject.toml.

The extension is optional: without a C compiler (or Python's headers) the build of ``bigresample._kernel``
fails, this says so, and the install goes on; bigresample then runs on its pure-Python fallback
(bigresample/_pykernel.py, chosen in bigresample/kernel.py) and its report says so."""

import os
import re
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# No contraction into fused multiply-adds: the kernel rounds each operation
# as scipy's C code does (compiled without them), so its results stay scipy's.
GCC_FLAGS = ["-O3", "-ffp-contract=off", "-std=c99"]


def _target_is_x86_64() -> bool:
    """The machine the extension is built for (not the one building it: cibuildwheel builds macOS x86-64
    wheels on arm64 and the other way round, saying so in _PYTHON_HOST_PLATFORM and ARCHFLAGS)."""
    arches = re.findall(r"-arch\s+(\S+)", os.environ.get("ARCHFLAGS", ""))
    if arches:
        return arches == ["x86_64"]
    return sysconfig.get_platform().endswith(("x86_64", "amd64"))


def _cpu_has_sse41() -> bool:
    """True if this machine's processor has SSE4.1 (Linux: /proc/cpuinfo; macOS: sysctl)."""
    try:
        with open("/proc/cpuinfo") as f:
            return " sse4_1" in f.read()
    except OSError:
        pass
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.features"], capture_output=True, text=True, timeout=10)
        return "SSE4.1" in out.stdout.split()
    except (OSError, subprocess.SubprocessError):
        return False


def flags(compiler_type: str) -> list:
    """The compile flags for ``compiler_type`` (distutils' name: 'unix' for GCC and clang, 'msvc', 'mingw32')."""
    if compiler_type == "msvc":
        # C11 for `restrict` (the loops' pointers); setuptools gives /Ox; /fp:precise, MSVC's default, does
        # not contract into fused multiply-adds (without /fp:contract).  Not built here: cibuildwheel's
        # Windows job is the first to compile it (README.md, "Making a release").
        return ["/std:c11"]
    out = list(GCC_FLAGS)
    # floor() as one instruction (roundsd): order 3 ~96 -> ~70 CPU ns per voxel (benchmarks/README.md).
    # Only for this machine: a wheel for others (cibuildwheel sets CIBUILDWHEEL=1) keeps x86-64's
    # baseline, which every numpy this project accepts runs on (numpy < 2.4 asks for SSE3 only);
    # the AVX2 routes are chosen at run time (_kernel.c), whatever the flags.
    portable = os.environ.get("CIBUILDWHEEL") == "1" or os.environ.get("BIGRESAMPLE_PORTABLE") == "1"
    if _target_is_x86_64() and not portable and _cpu_has_sse41():
        out.append("-msse4.1")
    return out


class OptionalBuildExt(build_ext):
    """build_ext that lets the kernel fail to build: a note, not an error (the fallback runs instead)."""

    def build_extension(self, ext):
        ext.extra_compile_args = flags(self.compiler.compiler_type)
        try:
            super().build_extension(ext)
        except Exception as exc:  # no compiler, no headers, a compile error: distutils' errors or OSError
            if not ext.optional:
                raise
            print(f"\nNOTE: bigresample's compiled kernel was not built ({type(exc).__name__}: {exc}).\n"
                  "bigresample will run on its pure-Python fallback: the same results, several times slower\n"
                  "(its report says so). Install a C compiler and Python's headers and reinstall for the kernel.\n",
                  file=sys.stderr)


setup(
    ext_modules=[Extension(
        "bigresample._kernel",
        sources=["bigresample/_kernel.c"],
        depends=["bigresample/_kernel_impl.h", "bigresample/_axis_impl.h", "bigresample/_kernel_types.h"],
        # BIGRESAMPLE_REQUIRE_KERNEL=1 (cibuildwheel, .ci/packages): a wheel without its kernel is an error
        optional=os.environ.get("BIGRESAMPLE_REQUIRE_KERNEL") != "1",
    )],
    cmdclass={"build_ext": OptionalBuildExt},
)
