/*-------------------------------------------------------------------------
 *
 * fuzz_form.c
 *		libFuzzer harness for src/form.c: tob_form_add().
 *
 * The input is split into a name and a value at its first NUL (the value
 * ends at the next NUL, as a C string does); an input without NUL is cut
 * in half.  Checks:
 *
 * - the output holds only A-Z a-z 0-9 - . _ ~ % = & and no NUL before its end;
 * - one pair is exactly encode(name) "=" encode(value): no '&', one '=',
 *   every unreserved byte as is, every other byte as %XX (upper-case hex),
 *   so that percent-decoding each side gives back the exact input bytes;
 * - a second pair appended to a non-empty buffer adds exactly one '&'
 *   followed by that pair on its own.
 *
 * IDENTIFICATION
 *	  test/fuzz/fuzz_form.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "lib/stringinfo.h"

#include "pg_stubs.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	tob_fuzz_init();
	return 0;
}

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static int
upper_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode enc[0..len) into out (room for len bytes), insisting on the
 * canonical form.  Returns the decoded length.
 */
static size_t
decode(const char *what, const char *enc, size_t len, char *out)
{
	size_t		i = 0;
	size_t		n = 0;

	while (i < len)
	{
		unsigned char c = (unsigned char) enc[i];

		if (c == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				tob_fuzz_fail("%s: '%%' at %zu is not followed by two hex digits", what, i);
			hi = upper_hex((unsigned char) enc[i + 1]);
			lo = upper_hex((unsigned char) enc[i + 2]);
			if (hi < 0 || lo < 0)
				tob_fuzz_fail("%s: \"%.3s\" at %zu is not %%XX with upper-case hex", what, enc + i, i);
			c = (unsigned char) (hi * 16 + lo);
			if (unreserved(c))
				tob_fuzz_fail("%s: unreserved byte '%c' was percent-encoded", what, c);
			if (c == '\0')
				tob_fuzz_fail("%s: a NUL byte was encoded", what);
			out[n++] = (char) c;
			i += 3;
		}
		else if (unreserved(c))
		{
			out[n++] = (char) c;
			i++;
		}
		else
			tob_fuzz_fail("%s: byte 0x%02X at %zu is neither unreserved nor %%XX", what, c, i);
	}
	return n;
}

/* Check one encoded pair against the name and value it came from. */
static void
check_pair(const char *enc, size_t len, const char *name, const char *value)
{
	const char *eq = memchr(enc, '=', len);
	char	   *decoded = malloc(len + 1);
	size_t		n;

	if (memchr(enc, '&', len) != NULL)
		tob_fuzz_fail("a single pair contains '&'");
	if (eq == NULL || memchr(eq + 1, '=', len - (eq + 1 - enc)) != NULL)
		tob_fuzz_fail("a single pair does not contain exactly one '='");

	n = decode("name", enc, eq - enc, decoded);
	if (n != strlen(name) || memcmp(decoded, name, n) != 0)
		tob_fuzz_fail("the name does not decode to its input (%zu bytes, not %zu)", n, strlen(name));
	n = decode("value", eq + 1, len - (eq + 1 - enc), decoded);
	if (n != strlen(value) || memcmp(decoded, value, n) != 0)
		tob_fuzz_fail("the value does not decode to its input (%zu bytes, not %zu)", n, strlen(value));
	free(decoded);
}

static void
check_buffer(const char *what, StringInfo buf)
{
	int			i;

	if (buf->len < 0 || buf->len >= buf->maxlen || buf->data[buf->len] != '\0')
		tob_fuzz_fail("%s: StringInfo is not NUL-terminated at len %d (maxlen %d)",
					  what, buf->len, buf->maxlen);
	for (i = 0; i < buf->len; i++)
	{
		unsigned char c = (unsigned char) buf->data[i];

		if (!(unreserved(c) || c == '%' || c == '=' || c == '&'))
			tob_fuzz_fail("%s: output byte 0x%02X at %d is outside [A-Za-z0-9._~%%=&-]", what, c, i);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t		name_len;
	const uint8_t *value_start;
	size_t		value_len;
	char	   *name;
	char	   *value;
	StringInfoData one;
	StringInfoData swapped;
	StringInfoData two;

	if (nul != NULL)
	{
		const uint8_t *end;

		name_len = nul - data;
		value_start = nul + 1;
		end = memchr(value_start, 0, size - (value_start - data));
		value_len = (end ? end : data + size) - value_start;
	}
	else
	{
		name_len = size / 2;
		value_start = data + name_len;
		value_len = size - name_len;
	}
	name = malloc(name_len + 1);
	memcpy(name, data, name_len);
	name[name_len] = '\0';
	value = malloc(value_len + 1);
	memcpy(value, value_start, value_len);
	value[value_len] = '\0';

	initStringInfo(&one);
	tob_form_add(&one, name, value);
	check_buffer("name=value", &one);
	check_pair(one.data, one.len, name, value);

	initStringInfo(&swapped);
	tob_form_add(&swapped, value, name);
	check_buffer("value=name", &swapped);
	check_pair(swapped.data, swapped.len, value, name);

	/* two pairs: the first, one '&', the second */
	initStringInfo(&two);
	tob_form_add(&two, name, value);
	tob_form_add(&two, value, name);
	check_buffer("two pairs", &two);
	if (two.len != one.len + 1 + swapped.len ||
		memcmp(two.data, one.data, one.len) != 0 ||
		two.data[one.len] != '&' ||
		memcmp(two.data + one.len + 1, swapped.data, swapped.len) != 0)
		tob_fuzz_fail("two pairs are not the first pair, '&' and the second");
	if (memchr(two.data + one.len + 1, '&', swapped.len) != NULL)
		tob_fuzz_fail("two pairs hold more than one '&'");

	tob_fuzz_mem_reset();
	free(name);
	free(value);
	return 0;
}
