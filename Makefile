EXTENSION  = twilio_outbox
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big = $(EXTENSION)
OBJS       = src/twilio_outbox.o src/settings.o src/shmem.o src/bgworker.o \
             src/worker.o src/dispatch.o src/pools.o src/policy.o src/reconcile.o \
             src/queue.o src/http.o src/pacing.o src/form.o src/response.o \
             src/enqueue.o src/trigger.o src/validate.o src/segments.o src/status.o \
             src/signature.o src/inbox.o src/ingest.o src/listener.o src/pool_slots.o \
             src/retention.o src/counts.o
DATA       = $(wildcard $(EXTENSION)--*.sql)
PGFILEDESC = "twilio_outbox - transactional outbox delivering messages via Twilio"

REGRESS      = install pools enqueue errors segments trigger transitions views controls security webhooks calls upgrade
ISOLATION      = dedup_race pool_slots
ifeq ($(REGRESS_TEMP_INSTANCE),no)
# pg_regress against an already running server started with the settings of
# test/regress.conf (pg_buildext installcheck under pg_virtualenv: see
# debian/rules); the isolation suite needs a server of its own and is left out.
REGRESS_OPTS = --encoding=UTF8 --no-locale
ISOLATION    =
else
# a temporary instance that preloads the library (pg_regress cannot initdb as root)
REGRESS_OPTS   = --temp-config=test/regress.conf --temp-instance=./tmp_check
ISOLATION_OPTS = --temp-config=test/isolation.conf --temp-instance=./tmp_check
endif

PKG_CONFIG ?= pkg-config
CURL_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null || curl-config --cflags)
CURL_LIBS   := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || curl-config --libs)
# -Wextra minus the warnings PostgreSQL's own headers and callback signatures trip;
# CI (scripts/test.sh) builds with WERROR=1.
PG_CFLAGS   += -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
               -Wno-missing-field-initializers $(if $(WERROR),-Werror)
PG_CPPFLAGS += $(CURL_CFLAGS) $(MHD_CFLAGS) -DTWILIO_OUTBOX_VERSION=\"$(EXTVERSION)\"
MHD_CFLAGS  := $(shell $(PKG_CONFIG) --cflags libmicrohttpd)
MHD_LIBS    := $(shell $(PKG_CONFIG) --libs libmicrohttpd)
SHLIB_LINK  += $(CURL_LIBS) $(MHD_LIBS)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# pgTAP suites; need a running server that preloads twilio_outbox (see scripts/test.sh)
prove:
	pg_prove --pset tuples_only=1 test/*.sql
.PHONY: prove

# PGXS tracks no header dependencies; rebuild everything when a header changes.
$(OBJS): $(wildcard src/*.h)
