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
#include "utf8.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_out;                     /* NULL = stdout */
static char log_service[64];              /* guarded by log_lock */
static atomic_int log_min = LOG_LVL_INFO; /* read without the lock */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* growable line buffer; failed = an allocation failed and the line is to be dropped */
struct linebuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void lb_reserve(struct linebuf *b, size_t more)
{
    if (b->failed || b->len + more < b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void lb_add(struct linebuf *b, const char *s, size_t n)
{
    lb_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void lb_adds(struct linebuf *b, const char *s)
{
    lb_add(b, s, strlen(s));
}

/* Appends s as a quoted JSON string. */
static void lb_add_json(struct linebuf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);

    lb_add(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t run = i;
        /* copy runs of plain characters in one go */
        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            lb_add(b, s + i, run - i);
            i = run;
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            lb_add(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[8];
            switch (c) {
            case '\n':
                lb_add(b, "\\n", 2);
                break;
            case '\r':
                lb_add(b, "\\r", 2);
                break;
            case '\t':
                lb_add(b, "\\t", 2);
                break;
            case '\b':
                lb_add(b, "\\b", 2);
                break;
            case '\f':
                lb_add(b, "\\f", 2);
                break;
            default:
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                lb_add(b, esc, 6);
            }
            i++;
        } else {
            size_t n = utf8_seq_len(u + i, len - i);
            if (n) {
                lb_add(b, s + i, n);
                i += n;
            } else {
                lb_add(b, "\\ufffd", 6);
                i++;
            }
        }
    }
    lb_add(b, "\"", 1);
}

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
static void line_start(struct linebuf *b, enum log_level lvl, const char *msg, const char *service)
{
    char ts[32];

    if (clock_format_rfc3339(clock_now_ms(), ts, sizeof(ts)) != 0)
        snprintf(ts, sizeof(ts), "1970-01-01T00:00:00.000Z");
    lb_adds(b, "{\"ts\":\"");
    lb_adds(b, ts);
    lb_adds(b, "\",\"level\":\"");
    lb_adds(b, level_names[lvl]);
    lb_adds(b, "\",\"service\":");
    lb_add_json(b, service);
    lb_adds(b, ",\"msg\":");
    lb_add_json(b, msg ? msg : "");
}

/* Terminates and writes the line, then frees the buffer. The service name is read under
 * the same lock as the write. */
static void line_emit(struct linebuf *b)
{
    lb_add(b, "}\n", 2);
    if (!b->failed) {
        FILE *out = log_out ? log_out : stdout;
        fwrite(b->p, 1, b->len, out);
        fflush(out);
    }
    free(b->p);
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
    struct linebuf b = {0};
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
        lb_add(&b, ",", 1);
        lb_add_json(&b, key);
        lb_add(&b, ":", 1);
        if (val)
            lb_add_json(&b, val);
        else
            lb_adds(&b, "null");
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
