/*-------------------------------------------------------------------------
 *
 * twilio_outbox.c
 *		Module entry point: defines the settings, requests shared memory and
 *		registers the sender worker and, when configured, the webhook
 *		listener.
 *
 * Loaded without shared_preload_libraries the SQL functions that insert
 * still work, but nothing sends; functions that need shared memory say so.
 *
 * Copyright (c) 2026, twilio_outbox developers
 *
 * IDENTIFICATION
 *	  src/twilio_outbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "listener.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	tob_define_settings(process_shared_preload_libraries_in_progress);
	tob_install_secret_hooks();

	if (!process_shared_preload_libraries_in_progress)
		return;

	tob_shmem_install_hooks();
	tob_register_worker();
	tob_register_listener();
}
