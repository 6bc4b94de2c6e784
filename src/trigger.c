/*-------------------------------------------------------------------------
 *
 * trigger.c
 *		twilio_enqueue_trigger(pool, to_column, body_template): a row trigger
 *		that enqueues a message for each inserted or updated row of a
 *		business table, and the check that runs its arguments at CREATE
 *		TRIGGER time (through an event trigger).
 *
 * The template's {column} placeholders take that column of the new row in
 * its text form (empty when null); {{ and }} stand for literal braces.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/trigger.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "enqueue.h"

#define TRIGGER_NARGS 3

PG_FUNCTION_INFO_V1(twilio_outbox_enqueue_trigger_1_0);
PG_FUNCTION_INFO_V1(twilio_outbox_enqueue_call_trigger_2_0);
PG_FUNCTION_INFO_V1(twilio_outbox_check_trigger_1_0);

/* What differs between the message trigger and the call trigger. */
typedef struct TriggerKind
{
	const char *function;		/* its SQL name */
	const char *template_arg;	/* the name of its third argument */
	const char *usage;			/* the hint */
	bool		xml;			/* values are escaped for TwiML */
} TriggerKind;

static const TriggerKind message_trigger = {
	"twilio_enqueue_trigger", "body_template",
	"Use it as EXECUTE FUNCTION twilio_enqueue_trigger('pool', 'phone_column', 'Hello {name}') in an AFTER INSERT OR UPDATE ... FOR EACH ROW trigger.",
	false
};

static const TriggerKind call_trigger = {
	"twilio_enqueue_call_trigger", "twiml_template",
	"Use it as EXECUTE FUNCTION twilio_enqueue_call_trigger('pool', 'phone_column', '<Response><Say>Hello {name}</Say></Response>') in an AFTER INSERT OR UPDATE ... FOR EACH ROW trigger.",
	true
};

/* Column number of a user column, or an error naming what was looked for. */
static int
column_number(TupleDesc tupdesc, const char *relname, const char *column,
			  const char *what)
{
	int			attnum = SPI_fnumber(tupdesc, column);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s names column \"%s\", which table \"%s\" does not have",
						what, column, relname),
				 errhint("Name one of the table's columns; column names are case-sensitive.")));
	return attnum;
}

/*
 * Walk the template.  With tuple == NULL only check that every placeholder
 * names a column; otherwise return the rendered body (or TwiML, where the
 * values are escaped: a column could otherwise add verbs to the call).
 */
static char *
render_template(const TriggerKind *kind, const char *tpl, TupleDesc tupdesc,
				HeapTuple tuple, const char *relname)
{
	StringInfoData out;
	const char *p = tpl;

	initStringInfo(&out);
	while (*p)
	{
		if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}'))
		{
			appendStringInfoChar(&out, p[0]);
			p += 2;
		}
		else if (*p == '{')
		{
			const char *close = strchr(p + 1, '}');
			char	   *column;
			int			attnum;

			if (close == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s has a \"{\" without a closing \"}\"", kind->template_arg),
						 errhint("Write {column} for a column's value and {{ for a literal brace.")));
			column = pnstrdup(p + 1, close - p - 1);
			attnum = column_number(tupdesc, relname, column, kind->template_arg);
			if (tuple != NULL)
			{
				char	   *value = SPI_getvalue(tuple, tupdesc, attnum);

				if (value != NULL && kind->xml)
					tob_append_xml_escaped(&out, value);
				else if (value != NULL)
					appendStringInfoString(&out, value);
			}
			p = close + 1;
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/* Checks shared by CREATE TRIGGER time and fire time. */
static void
check_trigger(const TriggerKind *kind, int nargs, char **args, int16 tgtype,
			  TupleDesc tupdesc, const char *relname)
{
	if (nargs != TRIGGER_NARGS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s needs 3 arguments (pool, to_column, %s), got %d",
						kind->function, kind->template_arg, nargs),
				 errhint("%s", kind->usage)));
	if (!TRIGGER_FOR_ROW(tgtype) || TRIGGER_FOR_DELETE(tgtype) ||
		TRIGGER_FOR_TRUNCATE(tgtype))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a FOR EACH ROW trigger on INSERT or UPDATE", kind->function),
				 errhint("%s", kind->usage)));
	if (args[0][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s pool argument is empty", kind->function),
				 errhint("%s", kind->usage)));
	column_number(tupdesc, relname, args[1], "to_column");
	render_template(kind, args[2], tupdesc, NULL, relname);
}

/* Error context: which trigger on which table was enqueuing. */
typedef struct TriggerContext
{
	const TriggerKind *kind;
	TriggerData *trigdata;
} TriggerContext;

static void
trigger_error_context(void *arg)
{
	TriggerContext *cxt = (TriggerContext *) arg;

	errcontext("%s \"%s\" on table \"%s\"", cxt->kind->function,
			   cxt->trigdata->tg_trigger->tgname,
			   RelationGetRelationName(cxt->trigdata->tg_relation));
}

/* Either trigger: render the row, enqueue a message or a call. */
static Datum
enqueue_from_trigger(const TriggerKind *kind, FunctionCallInfo fcinfo)
{
	ErrorContextCallback errcallback;
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerContext cxt = {kind, trigdata};
	Trigger    *trigger;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	char	   *relname;
	char	   *to_number;
	TobMessage	msg = {0};

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s can only be called as a trigger", kind->function),
				 errhint("%s", kind->usage)));

	errcallback.callback = trigger_error_context;
	errcallback.arg = &cxt;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	trigger = trigdata->tg_trigger;
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	relname = RelationGetRelationName(trigdata->tg_relation);
	check_trigger(kind, trigger->tgnargs, trigger->tgargs, trigger->tgtype, tupdesc, relname);

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	to_number = SPI_getvalue(tuple, tupdesc,
							 SPI_fnumber(tupdesc, trigger->tgargs[1]));
	if (to_number != NULL)
	{
		text	   *rendered = cstring_to_text(render_template(kind, trigger->tgargs[2],
															   tupdesc, tuple, relname));

		msg.is_call = kind->xml;
		msg.pool = trigger->tgargs[0];
		msg.to_number = to_number;
		if (msg.is_call)
			msg.twiml = rendered;
		else
			msg.body = rendered;
		(void) tob_enqueue(&msg, get_func_namespace(fcinfo->flinfo->fn_oid));
	}
	error_context_stack = errcallback.previous;

	return TRIGGER_FIRED_BEFORE(trigdata->tg_event) ?
		PointerGetDatum(tuple) : PointerGetDatum(NULL);
}

Datum
twilio_outbox_enqueue_trigger_1_0(PG_FUNCTION_ARGS)
{
	return enqueue_from_trigger(&message_trigger, fcinfo);
}

/* twilio_enqueue_call_trigger(pool, to_column, twiml_template) */
Datum
twilio_outbox_enqueue_call_trigger_2_0(PG_FUNCTION_ARGS)
{
	return enqueue_from_trigger(&call_trigger, fcinfo);
}

/*
 * _twilio_check_trigger(trigger oid, trigger function regprocedure): called
 * by the extension's event trigger after CREATE TRIGGER, so that a trigger
 * using twilio_enqueue_trigger with bad arguments is refused when it is
 * created instead of failing on the first insert.
 */
Datum
twilio_outbox_check_trigger_1_0(PG_FUNCTION_ARGS)
{
	Oid			trigoid = PG_GETARG_OID(0);
	Oid			funcoid = PG_GETARG_OID(1);
	Relation	tgrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(trigoid));
	scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);

		if (tg->tgfoid == funcoid)
		{
			char	  **args = palloc0(sizeof(char *) * (tg->tgnargs + 1));
			Relation	rel;
			int			i;

			if (tg->tgnargs > 0)
			{
				bool		isnull;
				Datum		d = heap_getattr(tup, Anum_pg_trigger_tgargs,
											 RelationGetDescr(tgrel), &isnull);
				bytea	   *val = DatumGetByteaPP(d);
				char	   *p = VARDATA_ANY(val);

				/* tgargs holds the arguments one after another, each NUL-ended */
				for (i = 0; i < tg->tgnargs; i++)
				{
					args[i] = pstrdup(p);
					p += strlen(p) + 1;
				}
			}
			rel = relation_open(tg->tgrelid, AccessShareLock);
			check_trigger(strcmp(get_func_name(funcoid), call_trigger.function) == 0 ?
						  &call_trigger : &message_trigger,
						  tg->tgnargs, args, tg->tgtype, RelationGetDescr(rel),
						  RelationGetRelationName(rel));
			relation_close(rel, AccessShareLock);
		}
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	PG_RETURN_VOID();
}
