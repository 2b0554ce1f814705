#!/bin/sh
# Module boundaries the compiler cannot see (docs/internals/README.md):
#   1. no .c file directly in src/: every file belongs to a module folder;
#   2. no file under src/ includes across folders by a relative path
#      ("../hub/internal.h"): a module's private headers are its own;
#   3. the CLI (src/cli/) is a client of the public API: it calls no nk__
#      function and includes no header but natkit/... and its own files.
# Prints each violation; exits 1 if there is any.
set -u
root=${1:?usage: check_boundaries.sh SOURCE_DIR}
bad=0
for f in "$root"/src/*.c "$root"/src/*.h; do
	[ -e "$f" ] || continue
	echo "not in a module folder: ${f#$root/}"
	bad=1
done
if grep -rn '#include "\.\./' "$root/src"; then
	echo "relative include across module folders (above)"
	bad=1
fi
cli="$root/src/cli"
if grep -nE '\bnk__[A-Za-z0-9_]+[[:space:]]*\(' "$cli"/*.c "$cli"/*.h; then
	echo "the CLI calls an internal nk__ function (above)"
	bad=1
fi
outside=$(for f in "$cli"/*.c "$cli"/*.h; do
	grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
		h=${line#*\"}
		h=${h%%\"*}
		case $h in
		natkit/*) [ -e "$root/include/$h" ] && continue ;;
		*/*) ;;
		*) [ -e "$cli/$h" ] && continue ;;
		esac
		echo "${f#$root/}:$line"
	done
done)
if [ -n "$outside" ]; then
	echo "$outside"
	echo "the CLI includes a header outside include/natkit/ and src/cli/ (above)"
	bad=1
fi
[ $bad -eq 0 ] && echo "module boundaries: ok"
exit $bad
