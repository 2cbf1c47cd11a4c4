#ifndef SP_TEST_PROXY_H
#define SP_TEST_PROXY_H

/* A TCP proxy on a free loopback port in front of a real server, for the
 * one failure a real server cannot be asked to produce on cue: a command
 * that ran, whose reply never came back. Armed with a needle, it waits for
 * a client write that contains it, then swallows the server's next reply
 * on that connection and closes both ends -- the client sees its
 * connection lost after the server applied the command. One-shot: re-arm
 * for another. Connections are otherwise forwarded byte for byte. */
typedef struct sp_t_proxy sp_t_proxy;

sp_t_proxy *sp_t_proxy_start(int target_port);
int sp_t_proxy_port(const sp_t_proxy *p);
void sp_t_proxy_arm(sp_t_proxy *p, const char *needle);
/* Armed to interpose: at the next client write that contains `needle`, the
 * proxy forwards the bytes before the needle, waits for the server's
 * replies to them (`lines` single-line replies, forwarded too), calls
 * fn(arg) on its own thread, then forwards the rest. For a write by another
 * client that must land at a precise point of a pipeline (between a WATCH
 * and its EXEC, say). One-shot. */
void sp_t_proxy_interpose(sp_t_proxy *p, const char *needle, int lines, void (*fn)(void *),
                          void *arg);
/* Interpositions done so far. */
int sp_t_proxy_interposed(sp_t_proxy *p);
/* Replies swallowed so far. */
int sp_t_proxy_dropped(sp_t_proxy *p);
void sp_t_proxy_stop(sp_t_proxy *p);

#endif
