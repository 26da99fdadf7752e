/*
 * metrics — Prometheus registry. See metrics.h.
 *
 * Design note: a registry is an array of metrics in registration order; a
 * metric is an array of series in first-use order, found by a linear scan of
 * the label values. Label cardinality in our services is small (routes ×
 * methods × status codes), so the scan beats a hash table on simplicity.
 */
#include "metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define METRICS_MAX_LABELS 16

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* One time series. values has mt->nlabels strings. For histograms counts has
 * mt->nbuckets + 1 non-cumulative entries (the last is the +Inf overflow). */
struct series {
    char **values;
    double value;
    uint64_t *counts;
    double sum;
    uint64_t count;
};

struct metric {
    struct metrics *owner;
    enum metric_type type;
    char *name;
    char *help;
    char *label_spec; /* normalised "a,b" for re-registration checks */
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbuckets;
    struct series *series;
    size_t nseries, capseries;
};

struct metrics {
    pthread_mutex_t lock;
    struct metric **list;
    size_t n, cap;
    double start_time;
    struct metric *proc_start, *proc_rss, *proc_cpu;
};

/* A growable text buffer; on allocation failure it sets oom and stops. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sbuf_str(struct sbuf *b, const char *s)
{
    sbuf_add(b, s, strlen(s));
}

/* Append s escaped for a label value (\\, \" and \n) or, when help is true,
 * for a HELP line (only \\ and \n). */
static void sbuf_escaped(struct sbuf *b, const char *s, bool help)
{
    for (; *s; s++) {
        if (*s == '\\')
            sbuf_add(b, "\\\\", 2);
        else if (*s == '\n')
            sbuf_add(b, "\\n", 2);
        else if (*s == '"' && !help)
            sbuf_add(b, "\\\"", 2);
        else
            sbuf_add(b, s, 1);
    }
}

/* Shortest decimal that reads back as the same double; Prometheus spellings
 * for the infinities and NaN. */
static void format_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(buf, len, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void sbuf_double(struct sbuf *b, double v)
{
    char buf[64];
    format_double(buf, sizeof buf, v);
    sbuf_str(b, buf);
}

static bool name_valid(const char *s, bool metric_name)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = isalpha(c) || c == '_' || (metric_name && c == ':') || (i > 0 && isdigit(c));
        if (!ok || c > 127)
            return false;
    }
    return true;
}

static void series_release(struct series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->counts);
}

static void metric_free(struct metric *mt)
{
    if (!mt)
        return;
    for (size_t i = 0; i < mt->nseries; i++)
        series_release(&mt->series[i], mt->nlabels);
    free(mt->series);
    for (size_t i = 0; i < mt->nlabels; i++)
        free(mt->labels[i]);
    free(mt->labels);
    free(mt->bounds);
    free(mt->label_spec);
    free(mt->help);
    free(mt->name);
    free(mt);
}

/* Split "a, b" into validated label names. Returns 0 or -1. */
static int parse_labels(struct metric *mt, const char *spec)
{
    char tmp[256];
    if (!spec || !*spec) {
        mt->label_spec = strdup("");
        return mt->label_spec ? 0 : -1;
    }
    size_t sl = strlen(spec);
    if (sl >= sizeof tmp)
        return -1;
    mt->labels = calloc(METRICS_MAX_LABELS, sizeof *mt->labels);
    mt->label_spec = calloc(1, sl + 1);
    if (!mt->labels || !mt->label_spec)
        return -1;
    const char *p = spec;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == 0 || n >= sizeof tmp || mt->nlabels >= METRICS_MAX_LABELS)
            return -1;
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        if (!name_valid(tmp, false) || strncmp(tmp, "__", 2) == 0)
            return -1;
        if (mt->type == METRIC_HISTOGRAM && strcmp(tmp, "le") == 0)
            return -1;
        for (size_t i = 0; i < mt->nlabels; i++)
            if (strcmp(mt->labels[i], tmp) == 0)
                return -1;
        mt->labels[mt->nlabels] = strdup(tmp);
        if (!mt->labels[mt->nlabels])
            return -1;
        size_t used = strlen(mt->label_spec);
        if (used)
            mt->label_spec[used++] = ',';
        memcpy(mt->label_spec + used, tmp, n + 1);
        mt->nlabels++;
        p = *e ? e + 1 : e;
        if (*e == ',' && !*p)
            return -1; /* trailing comma */
    }
    return 0;
}

static const double default_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static struct metric *metrics_register(struct metrics *m, enum metric_type type, const char *name,
                                       const char *help, const char *label_names,
                                       const double *buckets, size_t nbuckets)
{
    struct metric *mt = NULL, *ret = NULL;
    if (!m || !name_valid(name, true))
        return NULL;
    mt = calloc(1, sizeof *mt);
    if (!mt)
        return NULL;
    mt->owner = m;
    mt->type = type;
    mt->name = strdup(name);
    mt->help = strdup(help ? help : "");
    if (!mt->name || !mt->help || parse_labels(mt, label_names) < 0)
        goto out;
    if (type == METRIC_HISTOGRAM) {
        if (!buckets || nbuckets == 0) {
            buckets = default_buckets;
            nbuckets = sizeof default_buckets / sizeof default_buckets[0];
        }
        for (size_t i = 0; i < nbuckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                goto out;
        mt->bounds = malloc(nbuckets * sizeof *mt->bounds);
        if (!mt->bounds)
            goto out;
        memcpy(mt->bounds, buckets, nbuckets * sizeof *mt->bounds);
        mt->nbuckets = nbuckets;
    }

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        struct metric *o = m->list[i];
        if (strcmp(o->name, name) != 0)
            continue;
        if (o->type == type && strcmp(o->label_spec, mt->label_spec) == 0)
            ret = o;
        pthread_mutex_unlock(&m->lock);
        goto out; /* same name: the existing handle or NULL on a clash */
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct metric **l = realloc(m->list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&m->lock);
            goto out;
        }
        m->list = l;
        m->cap = cap;
    }
    m->list[m->n++] = mt;
    ret = mt;
    mt = NULL; /* owned by the registry now */
    pthread_mutex_unlock(&m->lock);
out:
    metric_free(mt);
    return ret;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *label_names)
{
    return metrics_register(m, METRIC_COUNTER, name, help, label_names, NULL, 0);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *label_names)
{
    return metrics_register(m, METRIC_GAUGE, name, help, label_names, NULL, 0);
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *label_names, const double *buckets, size_t nbuckets)
{
    return metrics_register(m, METRIC_HISTOGRAM, name, help, label_names, buckets, nbuckets);
}

/* Find or create the series for the given values. Caller holds the lock.
 * Returns NULL when out of memory. */
static struct series *series_get(struct metric *mt, const char **values)
{
    for (size_t i = 0; i < mt->nseries; i++) {
        struct series *s = &mt->series[i];
        size_t j = 0;
        while (j < mt->nlabels && strcmp(s->values[j], values[j]) == 0)
            j++;
        if (j == mt->nlabels)
            return s;
    }
    if (mt->nseries == mt->capseries) {
        size_t cap = mt->capseries ? mt->capseries * 2 : 4;
        struct series *l = realloc(mt->series, cap * sizeof *l);
        if (!l)
            return NULL;
        mt->series = l;
        mt->capseries = cap;
    }
    struct series s = {0};
    s.values = calloc(mt->nlabels ? mt->nlabels : 1, sizeof *s.values);
    if (!s.values)
        return NULL;
    for (size_t j = 0; j < mt->nlabels; j++) {
        s.values[j] = strdup(values[j]);
        if (!s.values[j])
            goto fail;
    }
    if (mt->type == METRIC_HISTOGRAM) {
        s.counts = calloc(mt->nbuckets + 1, sizeof *s.counts);
        if (!s.counts)
            goto fail;
    }
    mt->series[mt->nseries] = s;
    return &mt->series[mt->nseries++];
fail:
    series_release(&s, mt->nlabels);
    return NULL;
}

enum metric_op { OP_ADD, OP_SET, OP_OBSERVE };

static void metric_apply(struct metric *mt, enum metric_op op, double v, va_list ap)
{
    const char *values[METRICS_MAX_LABELS];
    for (size_t i = 0; i < mt->nlabels; i++) {
        const char *s = va_arg(ap, const char *);
        values[i] = s ? s : "";
    }
    pthread_mutex_lock(&mt->owner->lock);
    struct series *s = series_get(mt, values);
    if (!s)
        goto out;
    if (op == OP_OBSERVE) {
        size_t i = 0;
        while (i < mt->nbuckets && !(v <= mt->bounds[i]))
            i++;
        s->counts[i]++;
        s->sum += v;
        s->count++;
    } else if (op == OP_SET) {
        s->value = v;
    } else {
        s->value += v;
    }
out:
    pthread_mutex_unlock(&mt->owner->lock);
}

void metric_add(struct metric *mt, double v, ...)
{
    if (!mt || mt->type == METRIC_HISTOGRAM)
        return;
    if (mt->type == METRIC_COUNTER && !(v >= 0))
        return;
    va_list ap;
    va_start(ap, v);
    metric_apply(mt, OP_ADD, v, ap);
    va_end(ap);
}

void metric_set(struct metric *mt, double v, ...)
{
    if (!mt || mt->type != METRIC_GAUGE)
        return;
    va_list ap;
    va_start(ap, v);
    metric_apply(mt, OP_SET, v, ap);
    va_end(ap);
}

void metric_observe(struct metric *mt, double v, ...)
{
    if (!mt || mt->type != METRIC_HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    metric_apply(mt, OP_OBSERVE, v, ap);
    va_end(ap);
}

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Refresh the process collectors; values that cannot be read keep their last
 * value. */
static void metrics_collect_process(struct metrics *m)
{
    metric_set(m->proc_start, m->start_time);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, resident = 0;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
            long page = sysconf(_SC_PAGESIZE);
            metric_set(m->proc_rss, (double)resident * (double)(page > 0 ? page : 4096));
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        /* a counter has no set: write the value directly under the lock */
        pthread_mutex_lock(&m->lock);
        struct series *s = m->proc_cpu ? series_get(m->proc_cpu, NULL) : NULL;
        if (s && cpu > s->value)
            s->value = cpu;
        pthread_mutex_unlock(&m->lock);
    }
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->start_time = now_seconds();
    m->proc_start = metrics_gauge(m, "process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.", NULL);
    m->proc_rss =
        metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL);
    m->proc_cpu = metrics_counter(m, "process_cpu_seconds_total",
                                  "Total user and system CPU time spent in seconds.", NULL);
    if (!m->proc_start || !m->proc_rss || !m->proc_cpu) {
        metrics_free(m);
        return NULL;
    }
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        metric_free(m->list[i]);
    free(m->list);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Append {a="x",b="y"[,le="..."]} (nothing when there are no labels). */
static void render_labels(struct sbuf *b, const struct metric *mt, const struct series *s,
                          const char *le)
{
    if (mt->nlabels == 0 && !le)
        return;
    sbuf_str(b, "{");
    for (size_t i = 0; i < mt->nlabels; i++) {
        if (i)
            sbuf_str(b, ",");
        sbuf_str(b, mt->labels[i]);
        sbuf_str(b, "=\"");
        sbuf_escaped(b, s->values[i], false);
        sbuf_str(b, "\"");
    }
    if (le) {
        if (mt->nlabels)
            sbuf_str(b, ",");
        sbuf_str(b, "le=\"");
        sbuf_str(b, le);
        sbuf_str(b, "\"");
    }
    sbuf_str(b, "}");
}

static void render_metric(struct sbuf *b, const struct metric *mt)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    sbuf_str(b, "# HELP ");
    sbuf_str(b, mt->name);
    sbuf_str(b, " ");
    sbuf_escaped(b, mt->help, true);
    sbuf_str(b, "\n# TYPE ");
    sbuf_str(b, mt->name);
    sbuf_str(b, " ");
    sbuf_str(b, types[mt->type]);
    sbuf_str(b, "\n");

    static const struct series zero = {0};
    size_t n = mt->nseries;
    bool synth = (n == 0 && mt->nlabels == 0);
    for (size_t i = 0; i < (synth ? 1 : n); i++) {
        const struct series *s = synth ? &zero : &mt->series[i];
        if (mt->type != METRIC_HISTOGRAM) {
            sbuf_str(b, mt->name);
            render_labels(b, mt, s, NULL);
            sbuf_str(b, " ");
            sbuf_double(b, s->value);
            sbuf_str(b, "\n");
            continue;
        }
        uint64_t cum = 0;
        char le[64], num[32];
        for (size_t k = 0; k <= mt->nbuckets; k++) {
            cum += s->counts ? s->counts[k] : 0;
            if (k < mt->nbuckets)
                format_double(le, sizeof le, mt->bounds[k]);
            else
                snprintf(le, sizeof le, "+Inf");
            sbuf_str(b, mt->name);
            sbuf_str(b, "_bucket");
            render_labels(b, mt, s, le);
            snprintf(num, sizeof num, " %llu\n", (unsigned long long)cum);
            sbuf_str(b, num);
        }
        sbuf_str(b, mt->name);
        sbuf_str(b, "_sum");
        render_labels(b, mt, s, NULL);
        sbuf_str(b, " ");
        sbuf_double(b, s->sum);
        sbuf_str(b, "\n");
        sbuf_str(b, mt->name);
        sbuf_str(b, "_count");
        render_labels(b, mt, s, NULL);
        snprintf(num, sizeof num, " %llu\n", (unsigned long long)s->count);
        sbuf_str(b, num);
    }
}

char *metrics_render(struct metrics *m, size_t *len)
{
    struct sbuf b = {0};
    if (!m)
        return NULL;
    metrics_collect_process(m);
    sbuf_add(&b, "", 0);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++)
        render_metric(&b, m->list[i]);
    pthread_mutex_unlock(&m->lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
