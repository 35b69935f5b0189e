# ferry - build, test, fuzz, bench.
#
#   make            build ./ferry (release flags, -Werror)
#   make run        install deps, build, run ferry on its default (SOCKS 127.0.0.1:1080)
#   make test       install deps, build, unit + integration tests, then all again under ASan+UBSan
#   make unit       unit tests only (cmocka)      make integration   pytest only
#   make fuzz       build and run every libFuzzer target for FUZZ_SECONDS each
#   make bench      side-by-side benchmark (see bench/README.md)
#   make CC=clang   same with clang
#
# Every src/**/*.c except src/main.c goes into a static library that ./ferry,
# the unit tests and the fuzz targets link against, so new files need no edit here.

CC      ?= cc
BUILD   ?= build
SAN     ?=
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 30

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc -pthread -MMD -MP
LDLIBS  := -lcares -lcrypto -lyaml -lpcap -lhttp_parser -ljansson -lm -pthread

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRCS  := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))

.PHONY: all run test unit integration asan-test deps clean fuzz fuzz-build fuzz-smoke bench lint

all: ferry

ferry: $(BUILD)/ferry
	@if [ "$(BUILD)" = build ]; then cp $< $@.tmp && mv -f $@.tmp $@; fi

$(BUILD)/ferry: $(BUILD)/src/main.o $(BUILD)/libferry.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libferry.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libferry.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libferry.a -lcmocka $(LDLIBS)

deps:
	@scripts/install-deps

run: deps ferry
	./ferry

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/ferry
	FERRY_BIN=$(abspath $(BUILD)/ferry) $(PYTHON) -m pytest -q tests/integration

# The whole suite once more under AddressSanitizer + UndefinedBehaviorSanitizer,
# in its own build directory so the release objects are untouched.
asan-test:
	$(MAKE) --no-print-directory BUILD=build-asan SAN=1 unit integration

test: deps
	$(MAKE) --no-print-directory lint ferry
	$(MAKE) --no-print-directory unit integration
	$(MAKE) --no-print-directory fuzz-smoke
	$(MAKE) --no-print-directory asan-test

# libFuzzer: clang only. Library objects rebuilt with coverage instrumentation.
FUZZ_CFLAGS := -O1 -g -std=gnu11 -D_GNU_SOURCE -Isrc -pthread -MMD -MP -fsanitize=fuzzer-no-link,address,undefined
fuzz-build:
	$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang CFLAGS="$(FUZZ_CFLAGS)" SAN= build-fuzz/libferry.a
	@mkdir -p build-fuzz/fuzz
	@set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o build-fuzz/fuzz/$$n $$f build-fuzz/libferry.a $(LDLIBS); done

# Every fuzz target replays its checked-in corpus (seconds, not minutes), so
# targets keep building and seeds keep passing; `make fuzz` does the fuzzing.
fuzz-smoke: fuzz-build
	@set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); c=fuzz/corpus/$${n#fuzz_}; \
	  build-fuzz/fuzz/$$n -runs=0 $$c > build-fuzz/$$n.smoke.log 2>&1 \
	    || { cat build-fuzz/$$n.smoke.log; echo "fuzz-smoke: $$n FAILED"; exit 1; }; \
	  echo "fuzz-smoke: $$n ok ($$(ls $$c | wc -l) inputs)"; done

fuzz: fuzz-build
	@set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); c=fuzz/corpus/$${n#fuzz_}; \
	  mkdir -p $$c build-fuzz/corpus/$$n; echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  build-fuzz/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus/$$n $$c 2>&1 | tail -n 12; done

bench: ferry
	@scripts/install-deps --bench
	$(MAKE) -C bench
	bench/compare.sh $(BENCH_ARGS)

# proto/, buf/, crypto/ and policy/ are pure: no sockets, no loop.
lint:
	@! grep -nE '#include <(sys/socket|sys/epoll|netinet/in)\.h>|#include "core/loop\.h"' \
	    src/proto/*.[ch] src/buf/*.[ch] src/crypto/*.[ch] src/policy/*.[ch] 2>/dev/null \
	  || (echo "lint: pure module includes I/O headers" && false)

clean:
	rm -rf build build-asan build-fuzz build-clang ferry

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
