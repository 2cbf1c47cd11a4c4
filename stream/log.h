#ifndef STREAM_LOG_H
#define STREAM_LOG_H

/* One line per event of note, to stderr, with a level and a timestamp.
 * Never pass secrets (passwords, SASL credentials) to these. */
enum sp_log_level { SP_LOG_DEBUG, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR };

void sp_log_set_level(enum sp_log_level lvl);
int sp_log_parse_level(const char *s, enum sp_log_level *out);
void sp_log(enum sp_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)
#define sp_info(...)  sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)

#endif
