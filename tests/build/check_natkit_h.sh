#!/bin/sh
# natkit.h includes every public header: a program that includes only
# <natkit/natkit.h> can use every public object (tests/build/public_api.c
# checks the objects it names; this checks the header list itself).
set -u
root=${1:?usage: check_natkit_h.sh SOURCE_DIR}
bad=0
for h in "$root"/include/natkit/*.h; do
	name=${h##*/}
	[ "$name" = natkit.h ] && continue
	if ! grep -q "^#include \"natkit/$name\"" "$root/include/natkit/natkit.h"; then
		echo "natkit.h does not include natkit/$name"
		bad=1
	fi
done
[ $bad -eq 0 ] && echo "natkit.h: every public header"
exit $bad
