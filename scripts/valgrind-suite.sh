#!/bin/sh
# Runs the integration tests with every egressgw the fixtures start under valgrind's
# memcheck (tests/integration/gwlib.py: EGRESSGW_VALGRIND=1), then sums up the reports.
#
#   scripts/valgrind-suite.sh                      the whole integration suite
#   scripts/valgrind-suite.sh test_limits.py -k max  some files / pytest arguments
#
# A test fails when its egressgw's report shows a memory error or definitely/indirectly
# lost memory (checked when the fixture stops the process). Startup and shutdown waits
# are scaled by EGRESSGW_TIMEOUT_SCALE (default 10): valgrind runs the code 20-50 times
# slower. Tests that start egressgw themselves rather than through gwlib.Gateway or
# sidecarlib.Egressgw (test_process_hygiene.py, the demo script) run it natively.
#
# Environment: BUILD (default build; built with `make` first), OUT (default
# $BUILD/valgrind: pytest's temporary directories, the reports, summary.txt).
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/valgrind}
command -v valgrind >/dev/null || { echo "valgrind-suite: valgrind is not installed" >&2; exit 2; }
make -s BUILD="$BUILD"
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ $# -eq 0 ]; then
    set -- tests/integration
else
    # Bare test file names (test_*.py, with or without ::node) are taken relative to
    # tests/integration; everything else (options, paths) is passed as it is.
    for a in "$@"; do
        shift
        case $a in
        test_*) set -- "$@" "tests/integration/$a" ;;
        *) set -- "$@" "$a" ;;
        esac
    done
fi

rc=0
EGRESSGW_VALGRIND=1 EGRESSGW_BUILD="$(pwd)/$BUILD" \
    /usr/bin/python3 -m pytest -q -rf --basetemp="$OUT/tmp" "$@" 2>&1 | tee "$OUT/pytest.log" || rc=$?
# tee hides pytest's status: take it from the summary line (and a run that passed
# nothing, e.g. a mistyped file name, is a failure too).
grep -qE '([0-9]+ failed|[0-9]+ error)' "$OUT/pytest.log" && rc=1
grep -qE '[0-9]+ passed' "$OUT/pytest.log" || rc=1

reports=$(find "$OUT/tmp" -name '*.valgrind.*' -type f | sort)
n=0; nerr=0; nleak=0; unfinished=0
for r in $reports; do
    n=$((n + 1))
    e=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$r" | tail -n 1)
    if [ -z "$e" ]; then
        unfinished=$((unfinished + 1))
        echo "valgrind-suite: $r: no ERROR SUMMARY (killed before exit?)"
        continue
    fi
    nerr=$((nerr + e))
    if ! grep -q 'All heap blocks were freed' "$r" &&
       ! { grep -q 'definitely lost: 0 bytes' "$r" && grep -q 'indirectly lost: 0 bytes' "$r"; }; then
        nleak=$((nleak + 1))
        echo "valgrind-suite: $r: leaks:"
        grep -E 'definitely lost|indirectly lost' "$r" | sed 's/^/    /'
    fi
    [ "$e" = 0 ] || echo "valgrind-suite: $r: $e error(s)"
done
{
    echo "pytest: $(grep -E '^[0-9]+ (passed|failed)|^=*.*(passed|failed).*' "$OUT/pytest.log" | tail -n 1)"
    echo "egressgw processes under valgrind: $n"
    echo "memcheck errors (sum of ERROR SUMMARY): $nerr"
    echo "processes with definitely/indirectly lost memory: $nleak"
    echo "reports without a summary (process killed): $unfinished"
} | tee "$OUT/summary.txt"
[ "$nerr" = 0 ] && [ "$nleak" = 0 ] || rc=1
exit $rc
