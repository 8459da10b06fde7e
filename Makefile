# egressgw: one non-recursive Makefile.
#
#   make                 build/egressgw and build/egressctl (installs nothing)
#   make deps            the Debian packages to build and test (scripts/deps.sh; make test,
#                        demo, bench and fuzz run it first)
#   make install         binaries, man pages, examples, systemd unit, logrotate snippet
#                        under $(DESTDIR)$(PREFIX) (PREFIX default /usr/local)
#   make test            unit tests (cmocka) then integration tests (pytest)
#   make check           the structure ratchet: file/function length, call cycles, h1_parse
#                        callers in src/proxy (scripts/check_structure.py, structure-allow.txt)
#   make image           the container images, with podman (deploy/container/build.sh)
#   make SANITIZE=1 test the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo            the Istio walkthrough, end to end (scripts/demo.sh)
#   make bench           side-by-side benchmark against nginx and HAProxy (bench/run.sh)
#   make bench-figures   docs/BENCHMARKS.md's figures again, from its tables (gnuplot)
#   make fuzz FUZZ_SECONDS=60   each tests/fuzz/fuzz_*.c under libFuzzer (clang)
#   make storm           60 s reload + credential rotation storm under load (STORM_SECONDS),
#                        through the mesh (tests/soak/storm.py) and at the gateway alone
#   make soak            the storm, then a 10-minute soak through the mesh, RSS and
#                        descriptors as a curve (SOAK_SECONDS; tests/soak/soak.py)
#   make fuzz-long       each fuzzer for FUZZ_LONG_SECONDS (600; or FUZZ_SECONDS when given
#                        on the command line), every one even after a crash; .ci/nightly
#                        runs this and soak
#
# Sources are picked up by directory, so adding a file under src/<module>/ needs no
# edit here: every src/*/ file except src/cmd goes into build/libegress.a, and each
# binary links its own src/cmd/<name>/*.c against it. Each tests/unit/test_*.c is
# one cmocka binary.

CC       ?= cc
BUILD    ?= build
PKGS     := openssl libnghttp2 yaml-0.1 libcares
# Debian packages needed to build and test; scripts/deps.sh installs what is missing.
# Only `make deps` and the targets that run things (test, demo, bench, fuzz) install
# packages: a plain `make` or `make install` never does (distribution and container builds
# cannot allow it), it fails on a missing header instead.
# Recursive (=): BUILD changes with SANITIZE below.
DEPS_STAMP = $(BUILD)/.deps
ifneq ($(filter deps test unit integration demo bench fuzz fuzz-long storm soak,$(MAKECMDGOALS)),)
NEED_DEPS  = $(DEPS_STAMP)
endif

# The version baked into both binaries (src/core/version.c): git describe of this tree,
# or "unknown" outside a git checkout (a tarball); `make VERSION=1.2.3` overrides it.
IN_GIT     := $(shell [ "$$(git -C '$(CURDIR)' rev-parse --show-toplevel 2>/dev/null)" = '$(CURDIR)' ] && echo y)
ifeq ($(IN_GIT),y)
VERSION    ?= $(shell git -C '$(CURDIR)' describe --tags --always --dirty 2>/dev/null)
GIT_COMMIT ?= $(shell git -C '$(CURDIR)' rev-parse HEAD 2>/dev/null)
GIT_STATE  ?= $(shell git -C '$(CURDIR)' diff --quiet HEAD -- 2>/dev/null && echo clean || echo dirty)
GIT_DATE   ?= $(shell TZ=UTC0 git -C '$(CURDIR)' log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
endif
VERSION    := $(or $(VERSION),unknown)
GIT_COMMIT := $(or $(GIT_COMMIT),unknown)
GIT_STATE  := $(or $(GIT_STATE),unknown)
GIT_DATE   := $(or $(GIT_DATE),unknown)
VERSION_H   = $(BUILD)/gen/build_version.h

# make install: GNU directory variables; DESTDIR is prepended to all of them.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/egressgw
# /etc for PREFIX=/usr (a distribution package), PREFIX/etc otherwise.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
               -Wmissing-prototypes -Wno-unused-parameter -g -O2 -pthread -Isrc
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
ifeq ($(SANITIZE),1)
BUILD       := build-san
CFLAGS_BASE += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
LDFLAGS     += -fsanitize=address,undefined
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += $(CFLAGS_BASE) $(PKG_CFLAGS)
LDLIBS    += $(PKG_LIBS) -pthread -lm

LIB_SRCS  := $(sort $(wildcard src/core/*.c src/net/*.c src/http/*.c src/proxy/*.c \
               src/config/*.c src/secrets/*.c src/admin/*.c src/ca/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libegress.a

GW_SRCS   := $(wildcard src/cmd/egressgw/*.c)
CTL_SRCS  := $(wildcard src/cmd/egressctl/*.c)
GW_OBJS   := $(GW_SRCS:%.c=$(BUILD)/%.o)
CTL_OBJS  := $(CTL_SRCS:%.c=$(BUILD)/%.o)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit integration demo bench bench-figures clean fuzz fuzz-long storm soak install man image check FORCE
all: $(BUILD)/egressgw $(BUILD)/egressctl

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@scripts/deps.sh build test
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: %.c | $(NEED_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Rewritten only when a value changed, so an unchanged tree rebuilds nothing.
$(VERSION_H): FORCE
	@mkdir -p $(dir $@)
	@printf '#define EGRESS_VERSION "%s"\n#define EGRESS_COMMIT "%s"\n#define EGRESS_TREE_STATE "%s"\n#define EGRESS_COMMIT_DATE "%s"\n' \
	    '$(VERSION)' '$(GIT_COMMIT)' '$(GIT_STATE)' '$(GIT_DATE)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/src/core/version.o $(BUILD)/fuzz/obj/src/core/version.o: $(VERSION_H)
$(BUILD)/src/core/version.o: CFLAGS += -I$(BUILD)/gen

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/egressgw: $(GW_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/egressctl: $(CTL_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# The request core's tests (test_core*.c) share their environment, tests/unit/core_harness.c
# (not a test_*.c: no binary of its own).
CORE_UNIT_BINS := $(filter $(BUILD)/tests/test_core%,$(UNIT_BINS))
$(CORE_UNIT_BINS): $(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/core_harness.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

unit: all $(UNIT_BINS)
	@scripts/run-unit.sh $(UNIT_BINS)

# The heap-call counter tests/integration/test_alloc.py preloads into egressgw: tests
# only, and built without the sanitizers (a preloaded malloc cannot sit under ASan's).
MALLOC_COUNT := $(BUILD)/tests/malloc_count.so
$(MALLOC_COUNT): tests/tools/malloc_count.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -shared -fPIC -o $@ $<

integration: all $(MALLOC_COUNT)
	EGRESSGW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/integration

test: unit integration

# The long runs, not in `make test`: tests/soak/*.py (scripts, exit 1 on a failed request
# or growth) and tests/integration/storm_reload_rotation.py (its name does not match
# pytest's test_*.py, so only `make storm` runs it). `make soak` runs the soak even when
# the storm failed, and fails if either did.
STORM_SECONDS ?= 60
SOAK_SECONDS  ?= 600
STORM_RUN = EGRESSGW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/soak/storm.py \
	    --duration $(STORM_SECONDS) && \
	STORM_SECONDS=$(STORM_SECONDS) EGRESSGW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest \
	    -q -s tests/integration/storm_reload_rotation.py
storm: all
	$(STORM_RUN)
soak: all
	@rc=0; { $(STORM_RUN); } || rc=1; \
	EGRESSGW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/soak/soak.py \
	    --duration $(SOAK_SECONDS) || rc=1; exit $$rc

# No compiler needed: python3 reads the sources (see the script's header for the rules).
check:
	/usr/bin/python3 scripts/check_structure.py --all

demo: all
	@scripts/deps.sh demo
	EGRESSGW_BUILD=$(abspath $(BUILD)) scripts/demo.sh

bench: all
	@scripts/deps.sh bench
	EGRESSGW_BUILD=$(abspath $(BUILD)) bench/run.sh

# The figures of docs/BENCHMARKS.md again, from its tables (make bench draws them too).
bench-figures:
	/usr/bin/python3 bench/figures.py docs/BENCHMARKS.md

# Fuzzing (clang + libFuzzer, ASan + UBSan): every tests/fuzz/fuzz_<name>.c becomes
# $(BUILD)/fuzz/bin/fuzz_<name>, linked against an instrumented copy of the library, and
# runs for FUZZ_SECONDS seconds from the seeds in tests/fuzz/corpus/<name>/. New inputs
# go to $(BUILD)/fuzz/corpus-<name>/, never into the tree. A crash stops the target.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -pthread -Isrc -I$(BUILD)/gen \
                -fno-sanitize-recover=undefined
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/bin/%)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/obj/%.o: %.c | $(NEED_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/libegress-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/fuzz/bin/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(BUILD)/fuzz/libegress-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -MMD -MP -o $@ $< \
	    $(BUILD)/fuzz/libegress-fuzz.a $(PKG_LIBS) -lm

fuzz: $(FUZZ_BINS)
	@set -e; for b in $(FUZZ_BINS); do \
	    n=$${b##*/fuzz_}; log=$(BUILD)/fuzz/$$n.log; mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS)s (log: $$log)"; \
	    $$b -max_total_time=$(FUZZ_SECONDS) -max_len=20000 -timeout=10 \
	        $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n >$$log 2>&1 \
	        || { tail -n 40 $$log; echo "fuzz: $$n FAILED"; exit 1; }; \
	    grep -E '^#[0-9]+.*DONE' $$log; \
	done

# The scheduled long session: every harness runs its time even when one before it
# crashed (the crash input is kept as $(BUILD)/fuzz/crash-<name>-*); fails if any did.
FUZZ_LONG_SECONDS ?= $(if $(filter command line,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),600)
fuzz-long: $(FUZZ_BINS)
	@rc=0; for b in $(FUZZ_BINS); do \
	    n=$${b##*/fuzz_}; log=$(BUILD)/fuzz/$$n-long.log; mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	    echo "fuzz-long: $$n for $(FUZZ_LONG_SECONDS)s (log: $$log)"; \
	    if $$b -max_total_time=$(FUZZ_LONG_SECONDS) -max_len=20000 -timeout=10 \
	        -artifact_prefix=$(BUILD)/fuzz/crash-$$n- \
	        $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n >$$log 2>&1; then \
	        grep -E '^#[0-9]+.*DONE' $$log; \
	    else tail -n 40 $$log; echo "fuzz-long: $$n FAILED"; rc=1; fi; \
	done; exit $$rc

# Man pages, made from each binary's --help by scripts/help2man.sh (ours: no build
# dependency beyond sh and sed).
MANPAGES := $(BUILD)/man/egressgw.1 $(BUILD)/man/egressctl.1
man: $(MANPAGES)
$(BUILD)/man/%.1: $(BUILD)/% scripts/help2man.sh
	@mkdir -p $(dir $@)
	scripts/help2man.sh $< >$@.tmp && mv $@.tmp $@

install: all $(MANPAGES)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/examples \
	    $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	$(INSTALL) -m 0755 $(BUILD)/egressgw $(BUILD)/egressctl $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(MANPAGES) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 README.md LICENSE CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 examples/*.yaml examples/README.md $(DESTDIR)$(DOCDIR)/examples/
	sed 's|@BINDIR@|$(BINDIR)|g' deploy/systemd/egressgw@.service \
	    >$(DESTDIR)$(SYSTEMDDIR)/egressgw@.service
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/egressgw@.service
	$(INSTALL) -m 0644 deploy/logrotate/egressgw $(DESTDIR)$(SYSCONFDIR)/logrotate.d/egressgw
	@# The instances' option files: examples always, /etc/egressgw only where absent
	@# (an upgrade keeps the operator's).
	$(INSTALL) -d $(DESTDIR)$(DOCDIR)/examples/systemd $(DESTDIR)$(SYSCONFDIR)/egressgw
	$(INSTALL) -m 0644 deploy/systemd/gateway.env deploy/systemd/sidecar.env \
	    $(DESTDIR)$(DOCDIR)/examples/systemd/
	for f in gateway.env sidecar.env; do \
	    [ -e $(DESTDIR)$(SYSCONFDIR)/egressgw/$$f ] || \
	        $(INSTALL) -m 0644 deploy/systemd/$$f $(DESTDIR)$(SYSCONFDIR)/egressgw/$$f; \
	done

# The container images (deploy/container/Containerfile), built by podman from a Debian 12
# base made locally with mmdebstrap: no registry needed.
image:
	deploy/container/build.sh

clean:
	rm -rf build build-san

# The fuzz objects too: without their header dependencies, a struct changed in a header
# left objects of the old layout in the fuzz library (fuzz_config crashed in res_free).
-include $(LIB_OBJS:.o=.d) $(GW_OBJS:.o=.d) $(CTL_OBJS:.o=.d) $(UNIT_BINS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d) \
    $(BUILD)/tests/unit/core_harness.d $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)
