# ferry - build, test, fuzz, bench.
#
#   make            build ./ferry (release flags, -Werror)
#   make run        install deps, build, run ferry on its default (SOCKS 127.0.0.1:1080)
#   make test       install deps, lint + analyze, build, unit + integration tests, valgrind subset,
#                   fuzz (corpus replay + 10 s per target), then all again under ASan+UBSan
#   make unit       unit tests only (cmocka)      make integration   pytest only
#   make soak       soak and fault test for SOAK_SECONDS (default 180; make test runs 45)
#   make fuzz       build and run every libFuzzer target for FUZZ_SECONDS each (FUZZ_JOBS at a time)
#   make fuzz-ci    every fuzz target for 10 s, two at a time (part of make test)
#   make valgrind   an integration subset with ferry under valgrind (part of make test)
#   make analyze    cppcheck + clang-tidy (.clang-tidy) over src/ (part of make test)
#   make bench      side-by-side benchmark (see bench/README.md)
#   make CC=clang   same with clang
#   make install    ./ferry to $(PREFIX)/bin, the man page, bash completion, docs and examples
#                   (PREFIX=/usr/local; DESTDIR=/staging/dir for packaging)
#   make uninstall  remove what make install put there (same PREFIX and DESTDIR)
#   make man        regenerate the options of docs/ferry.1 from `ferry --dump-options`
#
# Every src/**/*.c except src/main.c goes into a static library that ./ferry,
# the unit tests and the fuzz targets link against, so new files need no edit here.

CC      ?= cc
BUILD   ?= build
SAN     ?=
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 30
SOAK_SECONDS ?= 180
# Parallel compiles within make test (the test runs themselves stay serial).
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)

WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc -I/usr/include/lua5.4 -pthread -MMD -MP
LDLIBS  := -lcares -lcrypto -lyaml -lpcap -lhttp_parser -ljansson -llua5.4 -lm -pthread

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRCS  := $(shell find src -name '*.c' ! -path src/main.c | sort)
ALL_SRCS  := $(LIB_SRCS) src/main.c
ALL_HDRS  := $(shell find src -name '*.h' | sort)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))

.PHONY: all build-all run test unit integration soak asan-test deps clean fuzz fuzz-ci fuzz-build fuzz-smoke bench lint analyze valgrind \
        install uninstall man

all: ferry

# ./ferry and every unit test binary of $(BUILD): what make test compiles
# with -j$(JOBS) before running anything.
build-all: $(BUILD)/ferry $(UNIT_BINS)

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

# Running needs only the build dependencies, not the test tools.
run:
	@scripts/install-deps --build
	$(MAKE) --no-print-directory ferry
	./ferry

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/ferry
	FERRY_BIN=$(abspath $(BUILD)/ferry) $(PYTHON) -m pytest -q --durations=12 tests/integration

# Mixed load and faults against one ferry (tests/soak/README.md).
soak: ferry
	$(PYTHON) tests/soak/soak.py --ferry $(abspath $(BUILD)/ferry) --duration $(SOAK_SECONDS)

# The whole suite once more under AddressSanitizer + UndefinedBehaviorSanitizer,
# in its own build directory so the release objects are untouched.
asan-test:
	$(MAKE) --no-print-directory -j$(JOBS) BUILD=build-asan SAN=1 build-all
	$(MAKE) --no-print-directory BUILD=build-asan SAN=1 unit integration

test: deps
	$(MAKE) --no-print-directory lint analyze
	$(MAKE) --no-print-directory -j$(JOBS) build-all ferry
	$(MAKE) --no-print-directory unit integration valgrind
	$(MAKE) --no-print-directory soak SOAK_SECONDS=45
	$(MAKE) --no-print-directory fuzz-smoke fuzz-ci
	$(MAKE) --no-print-directory asan-test

# The integration subset in tests/integration/valgrind.txt with ferry under
# valgrind memcheck. Any memory error or definitely/indirectly lost block
# fails its test (exit status 99 and the report, via FERRY_WRAPPER's {log}).
# Time limits are scaled x5 (FERRY_TIME_SCALE). --vgdb=no: no FIFOs in /tmp,
# which a chrooted ferry could not remove.
VALGRIND := valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 --vgdb=no --log-file={log}
valgrind: $(BUILD)/ferry
	cd tests/integration && FERRY_BIN=$(abspath $(BUILD)/ferry) FERRY_WRAPPER="$(VALGRIND)" \
	  $(PYTHON) -m pytest -q $$(sed 's/#.*//' valgrind.txt)

# libFuzzer: clang only. Library objects rebuilt with coverage instrumentation.
FUZZ_CFLAGS := -O1 -g -std=gnu11 -D_GNU_SOURCE -Isrc -I/usr/include/lua5.4 -pthread -MMD -MP -fsanitize=fuzzer-no-link,address,undefined
fuzz-build:
	$(MAKE) --no-print-directory -j$(JOBS) BUILD=build-fuzz CC=clang CFLAGS="$(FUZZ_CFLAGS)" SAN= build-fuzz/libferry.a
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

# Real fuzzing: every target for FUZZ_SECONDS, FUZZ_JOBS of them at a time.
# New inputs go to build-fuzz/corpus/NAME (seeds in fuzz/corpus/NAME are read
# only); a crash, leak, sanitizer report or a >10 s input fails the run, prints
# the end of the target's log and leaves the input in build-fuzz/artifacts/.
FUZZ_NAMES := $(FUZZ_SRCS:fuzz/%.c=%)
FUZZ_JOBS ?= 1
fuzz: fuzz-build
	@$(MAKE) --no-print-directory -j$(FUZZ_JOBS) $(FUZZ_NAMES:%=fuzz-run-%)

# CI's smoke fuzz: 10 s per target, two at a time (~1.5 min for 18 targets); -k so
# every target runs and every failure is reported. `make fuzz` is the real run.
fuzz-ci:
	@$(MAKE) --no-print-directory -k fuzz FUZZ_SECONDS=10 FUZZ_JOBS=2

fuzz-run-%:
	@n=$*; c=fuzz/corpus/$${n#fuzz_}; log=build-fuzz/$$n.fuzz.log; \
	  mkdir -p build-fuzz/corpus/$$n build-fuzz/artifacts; \
	  if build-fuzz/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	       -artifact_prefix=build-fuzz/artifacts/$$n- build-fuzz/corpus/$$n $$c > $$log 2>&1; then \
	    st() { sed -n "s/^stat::$$1: *//p" $$log; }; \
	    echo "fuzz: $$n ok: $$(st number_of_executed_units) executions in $(FUZZ_SECONDS) s ($$(st average_exec_per_sec)/s), $$(st new_units_added) new inputs, peak RSS $$(st peak_rss_mb) MB"; \
	  else \
	    tail -n 80 $$log; echo "fuzz: $$n FAILED (log: $$log)"; exit 1; \
	  fi

# Install layout (FHS): a package build runs `make install DESTDIR=... PREFIX=/usr`.
# The systemd unit (contrib/ferry.service) is not installed: its paths and
# user are a choice for the administrator (see the comments in it).
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
MAN1DIR    := $(PREFIX)/share/man/man1
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
DOCDIR     := $(PREFIX)/share/doc/ferry
DOC_FILES  := README.md $(wildcard docs/*.md)
EXAMPLE_FILES := $(wildcard examples/*.yaml examples/*.json)

install: $(BUILD)/ferry
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN1DIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(DOCDIR)/examples
	install -m 755 $(BUILD)/ferry $(DESTDIR)$(BINDIR)/ferry
	install -m 644 docs/ferry.1 $(DESTDIR)$(MAN1DIR)/ferry.1
	install -m 644 contrib/ferry.bash $(DESTDIR)$(BASHCOMPDIR)/ferry
	install -m 644 $(DOC_FILES) $(DESTDIR)$(DOCDIR)
	install -m 644 $(EXAMPLE_FILES) $(DESTDIR)$(DOCDIR)/examples

# Removes only the files install wrote (and the doc directory, once empty).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ferry $(DESTDIR)$(MAN1DIR)/ferry.1 $(DESTDIR)$(BASHCOMPDIR)/ferry
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(DOC_FILES))) \
	      $(addprefix $(DESTDIR)$(DOCDIR)/examples/,$(notdir $(EXAMPLE_FILES)))
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

man: $(BUILD)/ferry
	$(PYTHON) scripts/gen-man-options $(BUILD)/ferry docs/ferry.1

bench: ferry
	@scripts/install-deps --bench
	$(MAKE) -C bench
	bench/compare.sh $(BENCH_ARGS)

# Static analysis of every src/**/*.c with the build's -std/-D/-I flags:
# cppcheck (whole program, so no -j: it takes about a second), then
# clang-tidy with the checks in .clang-tidy, ANALYZE_JOBS files at a time.
# Any finding fails. Suppressions are inline, each with its reason.
# cppcheck reads Lua's headers as a system's: parsed, luaconf.h stops it
# with an #error (its 'long long' test uses limits.h macros cppcheck lacks).
ANALYZE_JOBS  ?= 2
ANALYZE_FLAGS := $(filter -std=% -D% -I%,$(CFLAGS)) -pthread
analyze:
	cppcheck --quiet --std=c11 --platform=unix64 --library=gnu \
	  $(filter-out -I/usr/include/lua%,$(filter -D% -I%,$(ANALYZE_FLAGS))) \
	  --enable=warning,performance,portability --inline-suppr --error-exitcode=1 \
	  --template='{file}:{line}:{column}: {severity}: {message} [{id}]' $(ALL_SRCS)
	@mkdir -p $(BUILD); echo "clang-tidy: $(words $(ALL_SRCS)) files, $(ANALYZE_JOBS) at a time"
	@printf '%s\n' $(ALL_SRCS) | xargs -P$(ANALYZE_JOBS) -I{} clang-tidy --quiet {} -- $(ANALYZE_FLAGS) \
	    > $(BUILD)/clang-tidy.log 2>&1 \
	  || { grep -v 'warnings\? generated\.$$' $(BUILD)/clang-tidy.log; echo "clang-tidy: findings above"; exit 1; }

# proto/, buf/, crypto/, policy/, the balancer algorithms and the sans-I/O
# stage modules are pure: no sockets, no loop. Layers: core/ names nothing
# above it; nothing below the server includes it; the server includes only
# relay's accept hook (relay/handler.h). config/ has no include cycle.
PURE_STAGE := $(foreach m,pcap_tcp capfilter hexdump toxq toxic rewrite http_one,src/stage/$(m).c src/stage/$(m).h) src/stage/rewrite_spec.c \
              $(wildcard src/stage/lua_*.[ch])
SHELL_SCRIPTS := .ci/run scripts/install-deps scripts/check-include-cycles bench/compare.sh bench/profile.sh bench/peers.sh \
                 tests/unit/vectors/ss_libev_interop.sh contrib/ferry.bash tests/yamux_peer/build.sh
lint:
	shellcheck -S warning $(SHELL_SCRIPTS)
	@! grep -nE '#include <(sys/socket|sys/epoll|netinet/in)\.h>|#include "core/loop\.h"' \
	    src/proto/*.[ch] src/buf/*.[ch] src/crypto/*.[ch] src/policy/*.[ch] src/upstream/balancer.[ch] src/upstream/disc.[ch] src/resolver/srv.c \
	    $(PURE_STAGE) 2>/dev/null \
	  || (echo "lint: pure module includes I/O headers" && false)
	@! grep -nE '#include "(relay|upstream|resolver|server)/' src/core/*.[ch] \
	  || (echo "lint: core/ includes a layer above it" && false)
	@! grep -nE '#include "(relay|upstream|resolver|server|api)/' src/obs/*.[ch] \
	  || (echo "lint: obs/ includes a layer above it (metrics take names and callbacks)" && false)
	@! grep -nE '#include "server/' $(filter-out src/server/% src/api/% src/main.c,$(ALL_SRCS) $(ALL_HDRS)) \
	  || (echo "lint: only main.c and api/ may include server/ (relay is below it)" && false)
	@! grep -nE '#include "relay/' src/server/*.[ch] | grep -v '"relay/handler.h"' \
	  || (echo "lint: server/ reaches relay only through relay/handler.h" && false)
	scripts/check-include-cycles src/config

clean:
	rm -rf build build-asan build-fuzz build-clang ferry

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
