# egressgw: one non-recursive Makefile.
#
#   make                 build/egressgw and build/egressctl
#   make test            unit tests (cmocka) then integration tests (pytest)
#   make SANITIZE=1 test the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo            the Istio walkthrough, end to end (scripts/demo.sh)
#   make bench           side-by-side benchmark against nginx and HAProxy (bench/run.sh)
#   make fuzz FUZZ_SECONDS=60   each tests/fuzz/fuzz_*.c under libFuzzer (clang)
#
# Sources are picked up by directory, so adding a file under src/<module>/ needs no
# edit here: every src/*/ file except src/cmd goes into build/libegress.a, and each
# binary links its own src/cmd/<name>/*.c against it. Each tests/unit/test_*.c is
# one cmocka binary.

CC       ?= cc
BUILD    ?= build
PKGS     := openssl libnghttp2 yaml-0.1 libcares
# Debian packages needed to build and test; scripts/deps.sh installs what is missing.
DEPS_STAMP = $(BUILD)/.deps

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

.PHONY: all deps test unit integration demo bench clean fuzz
all: $(DEPS_STAMP) $(BUILD)/egressgw $(BUILD)/egressctl

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@scripts/deps.sh build test
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

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

unit: all $(UNIT_BINS)
	@scripts/run-unit.sh $(UNIT_BINS)

integration: all
	EGRESSGW_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/integration

test: unit integration

demo: all
	@scripts/deps.sh demo
	EGRESSGW_BUILD=$(abspath $(BUILD)) scripts/demo.sh

bench: all
	@scripts/deps.sh bench
	EGRESSGW_BUILD=$(abspath $(BUILD)) bench/run.sh

# Fuzzing (clang + libFuzzer, ASan + UBSan): every tests/fuzz/fuzz_<name>.c becomes
# $(BUILD)/fuzz/bin/fuzz_<name>, linked against an instrumented copy of the library, and
# runs for FUZZ_SECONDS seconds from the seeds in tests/fuzz/corpus/<name>/. New inputs
# go to $(BUILD)/fuzz/corpus-<name>/, never into the tree. A crash stops the target.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -pthread -Isrc \
                -fno-sanitize-recover=undefined
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/bin/%)
FUZZ_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/fuzz/libegress-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/fuzz/bin/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(BUILD)/fuzz/libegress-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -o $@ $< \
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

clean:
	rm -rf build build-san

-include $(LIB_OBJS:.o=.d) $(GW_OBJS:.o=.d) $(CTL_OBJS:.o=.d) $(UNIT_BINS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d)
