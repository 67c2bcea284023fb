#!/usr/bin/env bash
# The compiled kernel (bigresample/_kernel.c) under AddressSanitizer and
# UndefinedBehaviorSanitizer (issue 28): builds the extension with
#   -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
# into a scratch directory (never over the normal build), copies the package
# and the tests next to it, and runs the numeric core's tests and the kernel's
# fuzz driver (tests/test_kernel_fuzz.py) with libasan preloaded (python itself
# is not built with ASan).  Any report aborts the run: exit status non-zero.
#
#   tools/sanitize.sh          the kernel, kernel boundary, fuzz, engine, transform,
#                              labels, splines, reference and warp tests (all of them)
#   tools/sanitize.sh --ci     the CI subset (.ci/run: about 3 minutes on 2 cores):
#                              the kernel boundary and fuzz tests (fuzz at
#                              FUZZ_EXAMPLES, 300 by default) plus the tests of
#                              the kernel, engine pins, transform pins and
#                              splines pins; left out: test_engine.py,
#                              test_labels.py, test_reference.py and
#                              test_splines.py (they reach the same C entry
#                              points, mostly through slower Python paths: the
#                              full run above covers them)
#
# Extra arguments go to pytest; SANITIZE_TESTS="tests/test_x.py ..." runs those
# files instead, SANITIZE_DIR=DIR builds in DIR and keeps it.  Needs gcc with libasan/libubsan (Debian:
# libasan8, libubsan1; .ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CI=0
if [ "${1:-}" = "--ci" ]; then CI=1; shift; fi
SCRATCH=${SANITIZE_DIR:-$(mktemp -d /tmp/bigresample-sanitize.XXXXXX)}
mkdir -p "$SCRATCH"
# a scratch folder of our own goes on every exit: a failed build, a failed test, Ctrl-C or SIGTERM
if [ -z "${SANITIZE_DIR:-}" ]; then
    trap 'rm -rf "$SCRATCH"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi
ASAN_LIB=$(gcc -print-file-name=libasan.so)
if [ ! -e "$ASAN_LIB" ]; then
    echo "sanitize.sh: gcc has no libasan.so (install libasan8 / gcc's sanitizer libraries)" >&2
    exit 2
fi
SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g"

# the package and its tests, copied: the sanitized extension replaces the normal one in the copy only
rm -rf "$SCRATCH/src"
mkdir -p "$SCRATCH/src"
cp -r bigresample tests setup.py pyproject.toml "$SCRATCH/src/"
[ -f README.md ] && cp README.md "$SCRATCH/src/"
find "$SCRATCH/src" -name '*.so' -delete
find "$SCRATCH/src" -name '__pycache__' -prune -exec rm -rf {} +
# setup.py's flags but -O1 (its -O3 would come after CFLAGS: a sanitized -O3 build of the twenty
# type pairs takes minutes; -O1 keeps the checks and the vector clones)
ARCH=""
case "$(uname -m)" in x86_64|amd64) ARCH="-msse4.1" ;; esac
INCLUDE=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
SUFFIX=$(python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
gcc -shared -fPIC -O1 -std=c99 -ffp-contract=off $ARCH $SAN -I"$INCLUDE" bigresample/_kernel.c \
    -o "$SCRATCH/src/bigresample/_kernel$SUFFIX" 2>"$SCRATCH/build.log" || { cat "$SCRATCH/build.log" >&2; exit 1; }

if [ -n "${SANITIZE_TESTS:-}" ]; then
    TESTS=$SANITIZE_TESTS
    export FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-100}
elif [ "$CI" = 1 ]; then
    TESTS="tests/test_kernel_boundary.py tests/test_kernel_fuzz.py tests/test_kernel.py tests/test_engine_pins.py
           tests/test_transform_pins.py tests/test_splines_pins.py"
    export FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-300}
else
    TESTS="tests/test_kernel_boundary.py tests/test_kernel_fuzz.py tests/test_kernel.py tests/test_engine.py
           tests/test_engine_pins.py tests/test_transform_pins.py tests/test_labels.py tests/test_splines.py
           tests/test_splines_pins.py tests/test_reference.py tests/test_warp.py"
    export FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-2000}
fi

cd "$SCRATCH/src"
# detect_leaks=0: CPython's own allocations at exit are not the kernel's;
# LD_PRELOAD: libasan must come first in a process whose python is not built with it
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$SCRATCH/src"
echo "sanitize.sh: extension $(ls bigresample/_kernel*.so) built with $SAN; FUZZ_EXAMPLES=$FUZZ_EXAMPLES"
LD_PRELOAD="$ASAN_LIB" python -c "import bigresample._kernel as k; assert k.__file__.startswith('$SCRATCH'), k.__file__"
status=0
LD_PRELOAD="$ASAN_LIB" python -m pytest -q -p no:cacheprovider $TESTS "$@" || status=$?
exit $status
