#!/bin/sh
# Module boundaries the compiler cannot see (docs/internals/README.md):
#   1. no .c file directly in src/: every file belongs to a module folder;
#   2. no file under src/ includes across folders by a relative path
#      ("../hub/internal.h"): a module's private headers are its own;
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
[ $bad -eq 0 ] && echo "module boundaries: ok"
exit $bad
