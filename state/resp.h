#ifndef STATE_RESP_H
#define STATE_RESP_H

/* Commands in Redis's wire format (RESP: "*<argc>\r\n" then "$<len>\r\n<arg>\r\n"
 * per argument), written by hand and handed to hiredis already formatted.
 * hiredis 0.14's redisAppendCommandArgv formats through sdscatfmt, about
 * 150 instructions per argument; a commit of a batch carries thousands of
 * arguments, and that formatting was the committer thread's largest cost. */
#include <stddef.h>

#include <hiredis.h>

/* Bytes the encoding of one command takes (lens[i]: argv[i]'s length). */
size_t sp_resp_size(int argc, const size_t *lens);

/* Writes the encoding of one command at out (sp_resp_size bytes of room) and
 * returns the end of what it wrote. */
char *sp_resp_write(char *out, int argc, const char *const *argv, const size_t *lens);

/* Appends one command to c's output buffer, as redisAppendCommandArgv does
 * (lens NULL: strlen of each argument). Returns REDIS_OK or REDIS_ERR. */
int sp_resp_append(redisContext *c, int argc, const char *const *argv, const size_t *lens);

/* Appends n commands (argcs[i], argvs[i]; lens NULL or lens[i] NULL:
 * strlen) to c's output buffer in one step: the buffer grows once, by the
 * whole pipeline, and each command is written in place. One command at a
 * time through hiredis cost about 900 instructions a command more (a copy
 * and a growth check each, measured with callgrind). Out of memory, it
 * aborts, as sp_xmalloc does. */
void sp_resp_append_all(redisContext *c, size_t n, const int *argcs,
                        const char *const *const *argvs, const size_t *const *lens);

#endif
