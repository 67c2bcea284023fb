"""The compiled kernels (bigresample/_kernel.c: the general path's and the separable engine's); the rest
of the project's metadata is in pyproject.toml."""

import platform
import sys

from setuptools import Extension, setup

# No contraction into fused multiply-adds: the kernel rounds each operation
# as scipy's C code does (compiled without them), so its results stay scipy's.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-std=c99"]
if FLAGS and platform.machine().lower() in ("x86_64", "amd64"):
    # floor() as one instruction (roundsd): order 3 ~96 -> ~70 CPU ns per
    # voxel (benchmarks/README.md).  numpy's own wheels require x86-64-v2,
    # which includes SSE4.1: this narrows no machine numpy runs on.
    FLAGS.append("-msse4.1")

setup(ext_modules=[Extension(
    "bigresample._kernel",
    sources=["bigresample/_kernel.c"],
    depends=["bigresample/_kernel_impl.h", "bigresample/_axis_impl.h", "bigresample/_kernel_types.h"],
    extra_compile_args=FLAGS,
)])
