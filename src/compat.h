/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Everything that differs between the PostgreSQL major versions we
 *		build against (15, 16, 17).  No other file tests PG_VERSION_NUM.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOB_COMPAT_H
#define TOB_COMPAT_H

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "twilio_outbox needs PostgreSQL 15 or later"
#endif

/* Custom wait events arrived in 17; before that everything is "Extension". */
#if PG_VERSION_NUM >= 170000
#define TOB_WAIT_EVENT(name) WaitEventExtensionNew(name)
#else
#define TOB_WAIT_EVENT(name) PG_WAIT_EXTENSION
#endif

/* pg_noreturn replaced pg_attribute_noreturn() in 18. */
#if PG_VERSION_NUM >= 180000
#define TOB_NORETURN_PREFIX pg_noreturn
#define TOB_NORETURN_SUFFIX
#else
#define TOB_NORETURN_PREFIX
#define TOB_NORETURN_SUFFIX pg_attribute_noreturn()
#endif

/* CreateWaitEventSet() takes a resource owner instead of a context from 17 on. */
#if PG_VERSION_NUM >= 170000
#define TOB_CREATE_WAIT_EVENT_SET(n) CreateWaitEventSet(NULL, (n))
#else
#define TOB_CREATE_WAIT_EVENT_SET(n) CreateWaitEventSet(TopMemoryContext, (n))
#endif

/* JSON semantic actions return an error code from 16 on. */
#if PG_VERSION_NUM >= 160000
#define TOB_JSON_ACTION JsonParseErrorType
#define TOB_JSON_ACTION_DONE return JSON_SUCCESS
#else
#define TOB_JSON_ACTION void
#define TOB_JSON_ACTION_DONE return
#endif

/* makeJsonLexContextCstringLen() takes a context to fill in from 17 on. */
#if PG_VERSION_NUM >= 170000
#define TOB_JSON_LEX(json, len) makeJsonLexContextCstringLen(NULL, (json), (len), PG_UTF8, true)
#else
#define TOB_JSON_LEX(json, len) makeJsonLexContextCstringLen((json), (len), PG_UTF8, true)
#endif

/* 16 added a soft-error context */
#if PG_VERSION_NUM >= 160000
#define TOB_QUALIFIED_NAME_LIST(string) stringToQualifiedNameList((string), NULL)
#else
#define TOB_QUALIFIED_NAME_LIST(string) stringToQualifiedNameList(string)
#endif

#endif							/* TOB_COMPAT_H */
