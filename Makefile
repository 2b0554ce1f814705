# natkit: a thin wrapper around CMake. See README.md.
#   make          build build/natkit, build/libnatkit.{a,so}, build/natkit.pc
#   make test     build with ASan+UBSan in build/asan and run everything under ctest;
#                 then print the reports tests leave in build/asan/test-reports/*.txt
#   make demo     the main job (scripts/demo.sh)
#   make bench    natkit vs coturn, same load, same run (bench/run.sh)
#   make fuzz     libFuzzer targets with clang in build/fuzz, FUZZ_SECONDS each (FUZZ_TARGETS: only
#                 these); new coverage is merged into fuzz/corpus/<target>/ (scripts/fuzz.sh)
#   make lab      a NAT lab shell for trying your own programs (tests/lab/natlab.sh)
#   make install  build in build/ with the prefix PREFIX (default /usr/local) and install there,
#                 under DESTDIR when given: make install DESTDIR=/tmp/x PREFIX=/usr

MAKEFLAGS    += --no-print-directory
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
CTEST_ARGS   ?=
PREFIX       ?= /usr/local
DESTDIR      ?=

.PHONY: all deps test demo bench fuzz lab install clean

all: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

deps:
	@sh scripts/deps.sh

test: deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DNK_SANITIZE=ON >/dev/null
	@cmake --build build/asan -j $(JOBS)
	@rm -rf build/asan/test-reports
	@cd build/asan && ctest --output-on-failure $(CTEST_ARGS)
	@cat build/asan/test-reports/*.txt 2>/dev/null || true

demo: all
	@sh scripts/demo.sh

bench: all
	@sh bench/run.sh

fuzz: deps
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNK_FUZZ=ON >/dev/null
	@cmake --build build/fuzz -j $(JOBS)
	@FUZZ_TARGETS="$(FUZZ_TARGETS)" sh scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

lab: all
	@sh tests/lab/natlab.sh shell

install: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build build -j $(JOBS) --target natkit natkit_static natkit_shared
	@DESTDIR=$(DESTDIR) cmake --install build

clean:
	rm -rf build
