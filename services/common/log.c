/* log — see log.h. A line is assembled in a growable buffer, then written with one fwrite
 * under log_lock. If memory runs out while building a line, the line is dropped: logging
 * never takes the process down. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "textbuf.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_out;                     /* NULL = stdout */
static char log_service[64];              /* guarded by log_lock */
static atomic_int log_min = LOG_LVL_INFO; /* read without the lock */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_init(const char *service, const char *level_name)
{
    int lvl = -1;

    if (!level_name || !*level_name)
        lvl = LOG_LVL_INFO;
    else if (strcasecmp(level_name, "warning") == 0)
        lvl = LOG_LVL_WARN;
    else
        for (int i = 0; i < 4; i++)
            if (strcasecmp(level_name, level_names[i]) == 0)
                lvl = i;
    if (lvl < 0)
        return -EINVAL;
    pthread_mutex_lock(&log_lock);
    snprintf(log_service, sizeof(log_service), "%s", service ? service : "");
    log_min = lvl;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void log_set_output(FILE *out)
{
    pthread_mutex_lock(&log_lock);
    log_out = out;
    pthread_mutex_unlock(&log_lock);
}

int log_enabled(enum log_level lvl)
{
    return (int)lvl >= log_min;
}

/* Builds the line header up to and including the msg member. */
static void line_start(struct textbuf *b, enum log_level lvl, const char *msg, const char *service)
{
    char ts[32];

    if (clock_format_rfc3339(clock_now_ms(), ts, sizeof(ts)) != 0)
        snprintf(ts, sizeof(ts), "1970-01-01T00:00:00.000Z");
    textbuf_adds(b, "{\"ts\":\"");
    textbuf_adds(b, ts);
    textbuf_adds(b, "\",\"level\":\"");
    textbuf_adds(b, level_names[lvl]);
    textbuf_adds(b, "\",\"service\":");
    textbuf_add_json(b, service);
    textbuf_adds(b, ",\"msg\":");
    textbuf_add_json(b, msg ? msg : "");
}

/* Terminates and writes the line, then frees the buffer. The service name is read under
 * the same lock as the write. */
static void line_emit(struct textbuf *b)
{
    textbuf_add(b, "}\n", 2);
    if (!b->failed) {
        FILE *out = log_out ? log_out : stdout;
        fwrite(b->p, 1, b->len, out);
        fflush(out);
    }
    free(b->p);
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
    struct textbuf b = {0};
    char service[sizeof(log_service)];
    va_list ap;

    if ((int)lvl < LOG_LVL_DEBUG || lvl > LOG_LVL_ERROR || !log_enabled(lvl))
        return;
    pthread_mutex_lock(&log_lock);
    memcpy(service, log_service, sizeof(service));
    pthread_mutex_unlock(&log_lock);

    line_start(&b, lvl, msg, service);
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *val = va_arg(ap, const char *);
        textbuf_add(&b, ",", 1);
        textbuf_add_json(&b, key);
        textbuf_add(&b, ":", 1);
        if (val)
            textbuf_add_json(&b, val);
        else
            textbuf_adds(&b, "null");
    }
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    line_emit(&b);
    pthread_mutex_unlock(&log_lock);
}

/* Formats fmt/ap and logs it as msg at lvl. */
__attribute__((format(printf, 2, 0))) static void log_vfmt(enum log_level lvl, const char *fmt,
                                                           va_list ap)
{
    char small[512];
    char *msg = small;
    va_list ap2;
    int n;

    if (!log_enabled(lvl))
        return;
    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0) {
        small[0] = '\0';
    } else if ((size_t)n >= sizeof(small)) {
        msg = malloc((size_t)n + 1);
        if (msg)
            vsnprintf(msg, (size_t)n + 1, fmt, ap2);
        else
            msg = small; /* out of memory: log the truncated text */
    }
    va_end(ap2);
    log_kv(lvl, msg, NULL);
    if (msg != small)
        free(msg);
}

#define LOG_FN(name, lvl)                                                                          \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_vfmt(lvl, fmt, ap);                                                                    \
        va_end(ap);                                                                                \
    }

LOG_FN(log_debug, LOG_LVL_DEBUG)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_error, LOG_LVL_ERROR)
