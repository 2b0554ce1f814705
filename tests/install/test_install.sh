#!/usr/bin/env bash
# Installing like a system package (issue 15): `cmake --install` of this build tree into a
# temporary DESTDIR with the prefix /usr (what `make install DESTDIR=D PREFIX=/usr` runs), then
#   - the files: binary, libnatkit.so with its SONAME, libnatkit.a, every public header, natkit.pc,
#     man pages, bash completion, systemd units, example configs, LICENSE;
#   - natkit.pc: the README's C snippet compiles with `pkg-config --cflags --libs natkit` alone,
#     against the installed tree only (PKG_CONFIG_SYSROOT_DIR into DESTDIR), links to the installed
#     libnatkit.so and finds a STUN server; linked statically with `pkg-config --static` too;
#   - `systemd-analyze verify` prints nothing for the units (ExecStart pointed at the installed
#     binary), and `systemd-analyze security` rates them 2.5 or better;
#   - every man page lints clean (groff -ww), every option of each command's --help is in its page
#     and in the completion; the completion completes commands, options and files;
#   - `natkit --version` names the commit;
#   - each example config starts its server (stopped with SIGTERM: exit 0), and a bad line in
#     each is refused with exit 2 and FILE:LINE.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init install
NK_BUILD_DIR=${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}
nk_require cmake pkg-config cc groff systemd-analyze readelf bash

# ---- install -----------------------------------------------------------------------------
D=$NK_TMP/root
DESTDIR=$D cmake --install "$NK_BUILD_DIR" --prefix /usr >"$NK_TMP/install.log" 2>&1 ||
	nk_fail "cmake --install failed: $(tail -5 "$NK_TMP/install.log")"
libdir=$(dirname "$(find "$D/usr/lib" -name libnatkit.a | head -1)")
[ -n "$libdir" ] && [ "$libdir" != . ] || nk_fail "no libnatkit.a under $D/usr/lib"
N=$D/usr/bin/natkit
[ -x "$N" ] || nk_fail "no $N"
so=$(readelf -d "$libdir/libnatkit.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$so" = libnatkit.so.0 ] || nk_fail "SONAME is '$so', want libnatkit.so.0"
[ -f "$libdir/$so" ] && [ -L "$libdir/libnatkit.so" ] || nk_fail "no $so or libnatkit.so link in $libdir"
ls "$libdir"/libnatkit.so.0.*.* >/dev/null 2>&1 || nk_fail "no versioned libnatkit.so.0.x.y"
for h in "$NK_SOURCE_DIR"/include/natkit/*.h; do
	cmp -s "$h" "$D/usr/include/natkit/${h##*/}" || nk_fail "header ${h##*/} not installed"
done
pc=$libdir/pkgconfig/natkit.pc
[ -f "$pc" ] || nk_fail "no natkit.pc in $libdir/pkgconfig"
grep -qx 'prefix=/usr' "$pc" || nk_fail "installed natkit.pc does not say prefix=/usr: $(head -5 "$pc")"
units=$D/usr/lib/systemd/system
for f in usr/share/bash-completion/completions/natkit usr/share/doc/natkit/LICENSE \
	usr/share/doc/natkit/CHANGELOG.md usr/share/man/man1/natkit.1 usr/share/man/man1/natkit-status.1; do
	[ -f "$D/$f" ] || nk_fail "not installed: /$f"
done
grep -q 'MIT License' "$D/usr/share/doc/natkit/LICENSE" || nk_fail "LICENSE is not the MIT license"
cmds=$("$N" --help | awk '/^commands:/{f=1;next} f&&!NF{exit} f{print $1}')
[ "$(wc -w <<<"$cmds")" -ge 11 ] || nk_fail "natkit --help lists too few commands: $cmds"
for c in $cmds status; do
	[ -f "$D/usr/share/man/man1/natkit-$c.1" ] || nk_fail "no man page natkit-$c.1"
done
for s in stun-server turn-server hub; do
	[ -f "$units/natkit-$s.service" ] || nk_fail "no unit natkit-$s.service"
	[ -f "$D/usr/share/doc/natkit/examples/$s.conf" ] || nk_fail "no example $s.conf"
	grep -q "^ExecStart=/usr/bin/natkit $s --config /etc/natkit/$s.conf\$" "$units/natkit-$s.service" ||
		nk_fail "natkit-$s.service does not run /usr/bin/natkit $s --config /etc/natkit/$s.conf"
done

# ---- the README's C snippet against the installed tree, with pkg-config alone -------------
awk '/^```c$/{f=1;next} /^```$/{if(f)exit} f' "$NK_SOURCE_DIR/README.md" >"$NK_TMP/snippet.c"
grep -q nk_stun_discover "$NK_TMP/snippet.c" || nk_fail "README's first C block is not the discovery snippet"
export PKG_CONFIG_SYSROOT_DIR=$D PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags natkit) && libs=$(pkg-config --libs natkit) || nk_fail "pkg-config natkit failed"
[[ " $cflags " == *" -I$D/usr/include "* ]] || nk_fail "pkg-config --cflags is '$cflags', not DESTDIR's include dir"
[[ " $libs " == *" -L$libdir "* ]] || nk_fail "pkg-config --libs is '$libs', not DESTDIR's lib dir"
[[ "$cflags $libs" != *"$NK_SOURCE_DIR"* && "$cflags $libs" != *"$NK_BUILD_DIR"* ]] ||
	nk_fail "pkg-config points into the source or build tree: $cflags $libs"
san=
readelf -d "$libdir/libnatkit.so" | grep -q 'libasan' && san="-fsanitize=address,undefined" # an NK_SANITIZE build
# shellcheck disable=SC2086 # word splitting of pkg-config's output is what is wanted
cc -Wall -Wextra -Werror $san -o "$NK_TMP/snippet" "$NK_TMP/snippet.c" $cflags $libs 2>"$NK_TMP/cc.log" ||
	nk_fail "the README snippet does not compile with pkg-config: $(cat "$NK_TMP/cc.log")"
# libnatkit.a with natkit.pc's Requires.private and Libs.private (the dependencies as shared
# libraries: `--static` would want their own static dependencies, not all installed here)
private=$(pkg-config --print-requires-private natkit | awk '{print $1}') || nk_fail "no Requires.private"
# shellcheck disable=SC2086,SC2046
cc $san -o "$NK_TMP/snippet-static" "$NK_TMP/snippet.c" $cflags "$libdir/libnatkit.a" \
	$(pkg-config --libs $private) $(sed -n 's/^Libs.private://p' "$pc") 2>"$NK_TMP/cc.log" ||
	nk_fail "libnatkit.a does not link with natkit.pc's private dependencies: $(cat "$NK_TMP/cc.log")"
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
LD_LIBRARY_PATH=$libdir ldd "$NK_TMP/snippet" | grep -q "$libdir/libnatkit.so.0" ||
	nk_fail "the snippet does not load the installed libnatkit.so"
port=$(nk_free_port 2)
nk_start stun "$NK_TMP/stun.log" "$N" stun-server --listen 127.0.0.1:$port --no-tcp
nk_wait_for_log "$NK_TMP/stun.log" 'listening' 10 || nk_fail "stun-server did not start"
out=$(LD_LIBRARY_PATH=$libdir "$NK_TMP/snippet" 127.0.0.1:$port) || nk_fail "the snippet failed: $out"
[[ $out =~ ^127\.0\.0\.1:[0-9]+$ ]] || nk_fail "the snippet printed '$out', want 127.0.0.1:PORT"
out=$("$NK_TMP/snippet-static" 127.0.0.1:$port) || nk_fail "the static snippet failed: $out"
[[ $out =~ ^127\.0\.0\.1:[0-9]+$ ]] || nk_fail "the static snippet printed '$out'"
nk_stop stun || nk_fail "stun-server did not exit 0 on SIGTERM"

# ---- systemd units -------------------------------------------------------------------------
mkdir -p "$NK_TMP/units"
for u in "$units"/*.service; do
	sed "s|^ExecStart=/usr/bin/natkit |ExecStart=$N |" "$u" >"$NK_TMP/units/${u##*/}"
done
out=$(systemd-analyze verify --man=no "$NK_TMP"/units/*.service 2>&1) ||
	nk_fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || nk_fail "systemd-analyze verify warns: $out"
for u in "$NK_TMP"/units/*.service; do
	systemd-analyze security --offline=yes --man=no --threshold=25 "$u" >"$NK_TMP/security.log" 2>&1 ||
		nk_fail "${u##*/}: $(tail -1 "$NK_TMP/security.log") (want 2.5 or less)"
	grep -q '^DynamicUser=yes$' "$u" && grep -q '^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$' "$u" ||
		nk_fail "${u##*/}: not a dynamic user with CAP_NET_BIND_SERVICE only"
done

# ---- man pages and completion ---------------------------------------------------------------
for m in "$D"/usr/share/man/man1/*.1; do
	out=$(groff -man -ww -z "$m" 2>&1)
	[ -z "$out" ] || nk_fail "${m##*/} has warnings: $out"
done
comp=$D/usr/share/bash-completion/completions/natkit
complete_words() { # the completions of the words given, the last one being completed
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _natkit; printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$comp" "$@"
}
for c in $cmds; do
	page=$(groff -man -Tutf8 "$D/usr/share/man/man1/natkit-$c.1" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g; s/.\x08//g')
	# every option in the command's --help (its usage lines, and the names its option lines describe)
	opts=$("$N" "$c" --help | awk 'NR==1,/^$/{print;next} /^  -/{l=substr($0,3); i=index(l,"  "); print i?substr(l,1,i):l}' |
		grep -oE '(^|[[ (|])--[a-z][a-z0-9-]*' | grep -oE -- '--[a-z0-9-]+' | sort -u)
	words=$(complete_words natkit "$c" --)
	for o in $opts; do
		grep -qE -- "(^|[^a-z-])$o([^a-z-]|\$)" <<<"$page" || nk_fail "natkit-$c.1 does not describe $o"
		grep -qx -- "$o" <<<"$words" || nk_fail "the completion of 'natkit $c --' lacks $o"
	done
done
[ "$(complete_words natkit tu | sort)" = $'turn-check\nturn-server\nturn-user' ] || nk_fail "command completion: $(complete_words natkit tu)"
: >"$NK_TMP/some.key"
[[ $(cd "$NK_TMP" && complete_words natkit listen --key some.) == some.key ]] || nk_fail "--key does not complete files"
[[ $(cd "$NK_TMP" && complete_words natkit hub --config some.) == some.key ]] || nk_fail "--config does not complete files"

# ---- --version -------------------------------------------------------------------------------
v=$("$N" --version) || nk_fail "natkit --version failed"
if git -C "$NK_SOURCE_DIR" rev-parse --git-dir >/dev/null 2>&1; then
	[[ $v =~ ^natkit\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-f]{7,}(-dirty)?\)$ ]] || nk_fail "--version: '$v'"
	head=$(git -C "$NK_SOURCE_DIR" rev-parse --short=7 HEAD)
	[[ $v == *"commit $head"* ]] || nk_log "note: --version names ${v##*commit }, HEAD is $head (built before a commit)"
else
	[[ $v =~ ^natkit\ [0-9.]+\ \(commit\ unknown\)$ ]] || nk_fail "--version outside git: '$v'"
fi

# ---- example configs: each starts its server; a bad line is named -----------------------------
ex=$D/usr/share/doc/natkit/examples
for s in stun-server hub turn-server; do
	port=$(nk_free_port 2)
	# the example's address is overridden (later options win) to a free loopback port
	nk_start "$s" "$NK_TMP/$s.log" "$N" "$s" --config "$ex/$s.conf" --listen 127.0.0.1:$port
	nk_wait_for_log "$NK_TMP/$s.log" 'listening on' 10 || nk_fail "$s did not start with $ex/$s.conf"
	nk_stop "$s" || nk_fail "$s with its example config did not exit 0 on SIGTERM"
	case $s in hub) bad=max-conns ;; *) bad=threads ;; esac
	{ cat "$ex/$s.conf"; echo "$bad=two   # not a number"; } >"$NK_TMP/bad-$s.conf"
	lines=$(wc -l <"$NK_TMP/bad-$s.conf")
	"$N" "$s" --config "$NK_TMP/bad-$s.conf" >"$NK_TMP/bad.out" 2>&1 </dev/null
	rc=$?
	[ $rc = 2 ] || nk_fail "$s with a bad config line exited $rc, want 2: $(cat "$NK_TMP/bad.out")"
	grep -q "bad-$s.conf:$lines: " "$NK_TMP/bad.out" || nk_fail "$s does not name FILE:LINE: $(cat "$NK_TMP/bad.out")"
done

nk_pass "installed into DESTDIR with prefix /usr: natkit.pc, README snippet (shared and static), units verified, man pages and completion match --help, --version '$v', example configs start"
