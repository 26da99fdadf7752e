/*
 * ingest — see ingest.h.
 *
 * One path serves a single request and a batch: items are validated one by one on the HTTP
 * worker (a bad item is rejected alone), repeated ids inside one request are folded onto their
 * first occurrence, and the remaining facts go to the pipeline (pipeline.h) with the request's
 * connection suspended: claimed together with those of every other request in flight, queued to
 * Kafka, marked once acknowledged. When its job is done the request is resumed and answered on
 * a worker again (statuses, exceptions, metrics, the JSON reply). No worker waits for Postgres
 * or Kafka, so a few workers carry every till in flight.
 */
#include "ingest.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"
#include "clock.h"
#include "events.h"
#include "json_util.h"
#include "log.h"
#include "pipeline.h"
#include "posjson.h"
#include "textbuf.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

#define EXCEPTION_REPEAT_MS (3600 * 1000LL) /* raise the same problem at most hourly */

struct ingest {
    struct service *svc;
    struct ingest_opts opts;
    const struct mapping *mapping;
    struct catalog *catalog;
    struct apikeys *keys;
    struct pipeline *pipeline;
    struct http_route routes[6];
    pthread_mutex_t raised_lock;
    json_t *raised; /* exception dedupe key -> monotonic ms of the last raise */
    struct metric *items_total;
    struct metric *item_cache; /* bytes of released item memory kept (posjson_pool_kept) */
};

/* What happened to one item of a request. */
enum item_status {
    ST_REJECTED = 1, /* validation failed: error set */
    ST_ACCEPTED,     /* published now */
    ST_DUPLICATE,    /* published before (or earlier in this request) */
    ST_CONFLICT,     /* id reused with another body */
    ST_RETRY,        /* Kafka or Postgres failed, or in flight elsewhere: retry later */
};

struct work {
    const char *type; /* "transaction", "movement", "takings" */
    int group;        /* in a batch: 0 its transactions, 1 its movements */
    size_t index;     /* in a batch: the item's index in its array */
    char *id;         /* in a batch: the item's transaction_id / movement_id if a string */
    struct pos_item item;
    struct posjson_error err;
    enum item_status status;
    char retry_code[40];
    char retry_msg[512];
    long dup_of;                /* index of the first item with the same event id, or -1 */
    struct pipeline_fact *fact; /* its fact in the pipeline (first occurrences), else NULL */
};

#define FLIGHT_CHUNK    500  /* a batch's items enter the pipeline in jobs of this many */
#define BATCH_SPLIT_MIN 1000 /* a batch of this many items is validated on two threads */

/*
 * One request between its handler and its answer: the parsed body when it was parsed whole
 * (NULL for a batch taken item by item; validated items own copies of what they need), the
 * items, the facts handed to the pipeline (in jobs of up to FLIGHT_CHUNK items, which the
 * pipeline's claim and settle threads work through while the next jobs wait) and the deferred
 * response. Freed by flight_free().
 */
struct flight {
    struct ingest *ing;
    json_t *obj;
    struct work *ws;
    size_t n;
    size_t prepared;             /* items [0, prepared) have their facts */
    json_t *seen;                /* event id -> index of its first item */
    struct pipeline_fact *facts; /* one per distinct valid item; never moves (jobs point in) */
    size_t *owner;               /* facts[k] is ws[owner[k]]'s */
    size_t nf;
    struct pipeline_job *jobs; /* room for one per chunk */
    size_t njobs;
    atomic_size_t outstanding; /* jobs in the pipeline, +1 while the handler adds */
    struct http_response *resp;
    http_continuation cont;
    bool deferred;
};

/* ---- helpers ----------------------------------------------------------------------------- */

static const char *topic_of(const struct work *w)
{
    return w->item.kind == POS_ITEM_MOVEMENT ? "stock.movements.v1" : "pos.transactions.v1";
}

static const char *status_name(enum item_status s)
{
    switch (s) {
    case ST_ACCEPTED:
        return "accepted";
    case ST_DUPLICATE:
        return "duplicate";
    case ST_CONFLICT:
        return "conflict";
    case ST_RETRY:
        return "retry";
    default:
        return "rejected";
    }
}

static void set_retry(struct work *w, const char *code, const char *fmt, const char *detail)
{
    w->status = ST_RETRY;
    snprintf(w->retry_code, sizeof(w->retry_code), "%s", code);
    snprintf(w->retry_msg, sizeof(w->retry_msg), fmt, detail);
}

static void on_delivery(void *opaque, int error, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)partition;
    (void)offset;
    pipeline_delivered(opaque, error, errstr);
}

/* Queue one owned item. Returns 0 when queued (on_delivery will run), else negative. */
static int publish_one(struct ingest *ing, struct work *w, char *err, size_t errlen)
{
    void *report = w->fact; /* on_delivery's opaque */
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__Envelope env;
    const struct pos_item *it = &w->item;

    if (it->kind == POS_ITEM_MOVEMENT) {
        Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;

        refs.location_id = it->movement->location_id;
        refs.movement_id = it->movement->movement_id;
        refs.store_code = it->movement->store_code;
        event_envelope_fill(&env, ing->svc, it->event_id, it->occurred_at_ms, it->source,
                            it->source_name, &refs);
        ev.envelope = &env;
        ev.movement = it->movement;
        return event_publish(ing->svc, "stock.movements.v1", it->key, &ev.base, it->event_id,
                             it->occurred_at_ms, on_delivery, report, err, errlen);
    }
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;

    if (it->kind == POS_ITEM_TRANSACTION) {
        refs.pos_transaction_id = it->transaction->transaction_id;
        refs.till_id = it->transaction->till_id;
        refs.store_code = it->transaction->store_code;
        refs.location_id = it->transaction->location_id;
        if (it->transaction->customer)
            refs.customer_id = it->transaction->customer->customer_id;
        ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
        ev.transaction = it->transaction;
    } else {
        refs.till_id = it->takings->till_id;
        refs.store_code = it->takings->store_code;
        ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS;
        ev.takings = it->takings;
    }
    event_envelope_fill(&env, ing->svc, it->event_id, it->occurred_at_ms, it->source,
                        it->source_name, &refs);
    ev.envelope = &env;
    return event_publish(ing->svc, "pos.transactions.v1", it->key, &ev.base, it->event_id,
                         it->occurred_at_ms, on_delivery, report, err, errlen);
}

/* Raise one exception unless the same key was raised within the last hour; its summary is
 * formatted from fmt only then, not for every repeat. */
static void raise_once(struct ingest *ing, Tillsync__V1__ExceptionType type, const char *key,
                       const struct work *w, const char *const *details, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void raise_once(struct ingest *ing, Tillsync__V1__ExceptionType type, const char *key,
                       const struct work *w, const char *const *details, const char *fmt, ...)
{
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    struct exception_raise x = {0};
    int64_t now = clock_mono_ms();
    json_t *last;
    char err[256], summary[400];
    va_list ap;

    pthread_mutex_lock(&ing->raised_lock);
    last = json_object_get(ing->raised, key);
    if (last && now - json_integer_value(last) < EXCEPTION_REPEAT_MS) {
        pthread_mutex_unlock(&ing->raised_lock);
        return;
    }
    json_object_set_new(ing->raised, key, json_integer(now));
    pthread_mutex_unlock(&ing->raised_lock);
    va_start(ap, fmt);
    vsnprintf(summary, sizeof(summary), fmt, ap);
    va_end(ap);
    if (w->item.kind == POS_ITEM_TRANSACTION) {
        refs.pos_transaction_id = w->item.transaction->transaction_id;
        refs.store_code = w->item.transaction->store_code;
        refs.till_id = w->item.transaction->till_id;
        refs.location_id = w->item.transaction->location_id;
    } else if (w->item.kind == POS_ITEM_MOVEMENT) {
        refs.movement_id = w->item.movement->movement_id;
        refs.location_id = w->item.movement->location_id;
    }
    x.type = type;
    x.dedupe_key = key;
    x.summary = summary;
    x.related_event_id = w->item.event_id;
    x.topic = topic_of(w);
    x.refs = &refs;
    x.details = details;
    if (event_raise_exception(ing->svc, &x, err, sizeof(err)) != 0) {
        log_kv(LOG_LVL_WARN, "exception not raised", "key", key, "reason", err, NULL);
        pthread_mutex_lock(&ing->raised_lock);
        json_object_del(ing->raised, key); /* try again next time */
        pthread_mutex_unlock(&ing->raised_lock);
    }
}

static void raise_exceptions(struct ingest *ing, const struct work *w)
{
    const char *where =
        w->item.kind == POS_ITEM_MOVEMENT ? w->item.movement->location_id : w->item.source_name;
    char key[400];

    for (size_t i = 0; i < w->item.n_unknown_skus; i++) {
        const char *sku = w->item.unknown_skus[i];
        const char *details[] = {"sku", sku, "source", where, NULL};

        text_join(key, sizeof(key),
                  (const char *const[]){"sku_unknown/", ing->svc->tenant_id, "/", sku, NULL});
        raise_once(ing, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN, key, w, details,
                   "SKU %s sold or moved at %s is not in the catalogue", sku, where);
    }
    for (size_t i = 0; i < w->item.n_unmapped_codes; i++) {
        const char *code = w->item.unmapped_codes[i];
        const char *details[] = {"non_stock_code", code, NULL};

        text_join(
            key, sizeof(key),
            (const char *const[]){"non_stock_unmapped/", ing->svc->tenant_id, "/", code, NULL});
        raise_once(ing, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED, key, w,
                   details, "Non-stock code %s has no ledger code", code);
    }
}

/* ---- a request's flight through the pipeline ------------------------------------------- */

static struct flight *flight_new(struct ingest *ing, json_t *obj, size_t n,
                                 struct http_response *resp, http_continuation cont)
{
    struct flight *fl = calloc(1, sizeof(*fl));
    size_t cap = n ? n : 1;

    if (!fl)
        abort(); /* OOM policy */
    fl->ws = calloc(cap, sizeof(*fl->ws));
    fl->facts = calloc(cap, sizeof(*fl->facts));
    fl->owner = calloc(cap, sizeof(*fl->owner));
    fl->jobs = calloc(cap / FLIGHT_CHUNK + 1, sizeof(*fl->jobs));
    fl->seen = json_object();
    if (!fl->ws || !fl->facts || !fl->owner || !fl->jobs || !fl->seen)
        abort(); /* OOM policy */
    fl->ing = ing;
    fl->obj = obj; /* owned by fl now */
    fl->n = n;
    fl->resp = resp;
    fl->cont = cont;
    atomic_init(&fl->outstanding, 1);
    return fl;
}

static void flight_free(struct flight *fl)
{
    if (!fl)
        return;
    for (size_t i = 0; i < fl->n; i++) {
        pos_item_release(&fl->ws[i].item);
        free(fl->ws[i].id);
    }
    free(fl->ws);
    free(fl->facts);
    free(fl->owner);
    free(fl->jobs);
    json_decref(fl->seen);
    json_decref(fl->obj);
    metric_set(fl->ing->item_cache, (double)posjson_pool_kept());
    free(fl);
}

/* The pipeline's publish: the job's facts[k] is owned, queue its item to Kafka. Claim thread. */
static int flight_publish(struct pipeline_job *job, size_t k, char *err, size_t errlen)
{
    struct flight *fl = job->opaque;
    size_t g = (size_t)(&job->facts[k] - fl->facts);

    return publish_one(fl->ing, &fl->ws[fl->owner[g]], err, errlen);
}

/* One job fewer outstanding; after the last, let the request go on (cont on a worker). */
static void flight_unhold(struct flight *fl)
{
    if (atomic_fetch_sub(&fl->outstanding, 1) == 1)
        http_response_resume(fl->resp);
}

/* The pipeline is done with a job of the flight. Settle thread. */
static void flight_done(struct pipeline_job *job)
{
    flight_unhold(job->opaque);
}

/*
 * Items [prepared, upto) are validated: fold repeats within the request onto their first
 * occurrence, one fact per first one, and hand those facts to the pipeline as one job (the
 * request is deferred at the first). Handler context.
 */
static void flight_add(struct flight *fl, size_t upto)
{
    size_t k0 = fl->nf;
    struct pipeline_job *job;

    for (size_t i = fl->prepared; i < upto; i++) {
        struct work *w = &fl->ws[i];
        json_t *first;

        w->dup_of = -1;
        if (w->status == ST_REJECTED)
            continue;
        first = json_object_get(fl->seen, w->item.event_id);
        if (first) {
            w->dup_of = (long)json_integer_value(first);
            continue;
        }
        json_object_set_new(fl->seen, w->item.event_id, json_integer((json_int_t)i));
        fl->facts[fl->nf].claim.event_id = w->item.event_id;
        fl->facts[fl->nf].claim.body_hash = w->item.body_hash;
        w->fact = &fl->facts[fl->nf];
        fl->owner[fl->nf++] = i;
    }
    fl->prepared = upto;
    if (fl->nf == k0)
        return;
    if (!fl->deferred) {
        http_response_defer(fl->resp, fl->cont, fl);
        fl->deferred = true;
    }
    job = &fl->jobs[fl->njobs++];
    job->facts = &fl->facts[k0];
    job->n = fl->nf - k0;
    job->publish = flight_publish;
    job->done = flight_done;
    job->opaque = fl;
    atomic_fetch_add(&fl->outstanding, 1);
    if (pipeline_submit(fl->ing->pipeline, job) != 0) {
        for (size_t k = k0; k < fl->nf; k++)
            fl->facts[k].claim_rc = -ESHUTDOWN; /* the service is closing: retry later */
        atomic_fetch_sub(&fl->outstanding, 1);
    }
}

/*
 * Every item is added: answer with cont (which settles, replies and frees fl) once the
 * pipeline is done with every job; at once when nothing went to it. Handler context.
 */
static void flight_end(struct flight *fl, const struct http_request *req)
{
    flight_add(fl, fl->n);
    if (!fl->deferred) {
        fl->cont(req, fl->resp, fl);
        return;
    }
    flight_unhold(fl);
}

/* Every item's status from its fact (or its first occurrence), exceptions and metrics. */
static void flight_settle(struct flight *fl)
{
    struct ingest *ing = fl->ing;
    size_t run = 0;

    for (size_t k = 0; k < fl->nf; k++) {
        const struct pipeline_fact *f = &fl->facts[k];
        struct work *w = &fl->ws[fl->owner[k]];

        if (f->claim_rc == -ESHUTDOWN) {
            set_retry(w, "shutting_down", "%s", "the service is restarting; retry shortly");
            continue;
        }
        if (f->claim_rc != 0) {
            set_retry(w, "database_unavailable",
                      "the idempotency store is unavailable (%s); retry later", "postgres");
            continue;
        }
        switch (f->claim.state) {
        case CLAIM_PUBLISHED:
            w->status = ST_DUPLICATE;
            break;
        case CLAIM_CONFLICT:
            w->status = ST_CONFLICT;
            break;
        case CLAIM_IN_FLIGHT:
            set_retry(w, "in_progress", "%s",
                      "the same fact is being published by another "
                      "request; retry shortly");
            break;
        case CLAIM_OWNED:
            if (f->kafka_error == 0)
                w->status = ST_ACCEPTED;
            else
                set_retry(w, "kafka_unavailable", "Kafka did not acknowledge the event (%s); retry",
                          f->kafka_errstr);
            break;
        }
    }
    for (size_t i = 0; i < fl->n; i++) {
        struct work *w = &fl->ws[i];

        if (w->dup_of >= 0) {
            const struct work *f = &fl->ws[w->dup_of];

            if (f->status == ST_ACCEPTED || f->status == ST_DUPLICATE)
                w->status =
                    strcmp(f->item.body_hash, w->item.body_hash) == 0 ? ST_DUPLICATE : ST_CONFLICT;
            else if (f->status == ST_RETRY) {
                w->status = ST_RETRY; /* f is another item: copy, not format over itself */
                memcpy(w->retry_code, f->retry_code, sizeof(w->retry_code));
                memcpy(w->retry_msg, f->retry_msg, sizeof(w->retry_msg));
            } else
                w->status = f->status;
        }
        if (w->status == ST_ACCEPTED)
            raise_exceptions(ing, w);
        /* the counter moves once per run of items of one type and status (a batch is mostly
         * one run), not once per item */
        if (run && (w->type != fl->ws[i - 1].type || w->status != fl->ws[i - 1].status)) {
            metric_add(ing->items_total, (double)run, fl->ws[i - 1].type,
                       status_name(fl->ws[i - 1].status));
            run = 0;
        }
        run++;
    }
    if (run)
        metric_add(ing->items_total, (double)run, fl->ws[fl->n - 1].type,
                   status_name(fl->ws[fl->n - 1].status));
}

/* ---- request handling --------------------------------------------------------------------- */

typedef int (*parse_fn)(const json_t *, const struct posjson_ctx *, struct pos_item *,
                        struct posjson_error *);

/* Authenticate: 0 with who set, else the response is filled and negative returned. */
static int authenticate(struct ingest *ing, const struct http_request *req,
                        struct http_response *resp, struct apikey_principal *who)
{
    const char *h = http_request_header(req, "Authorization");
    const char *key = http_request_header(req, "X-Api-Key");
    int rc;

    if (!key && h && strncasecmp(h, "Bearer ", 7) == 0)
        key = h + 7;
    rc = apikeys_check(ing->keys, key, who);
    if (rc == -EAGAIN) {
        http_response_header(resp, "Retry-After", "5");
        http_response_error(resp, 503, "database_unavailable", NULL,
                            "API keys cannot be loaded right now; retry later");
        return rc;
    }
    if (rc != 0) {
        http_response_header(resp, "WWW-Authenticate", "Bearer");
        http_response_error(resp, 401, "unauthorized", NULL,
                            key ? "unknown or revoked API key"
                                : "missing API key (Authorization: Bearer <key> or X-Api-Key)");
        return rc;
    }
    return 0;
}

static void ctx_init(struct ingest *ing, const struct apikey_principal *who, bool late,
                     struct posjson_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->tenant_id = ing->svc->tenant_id;
    ctx->mapping = ing->mapping;
    ctx->auth_store = who->store_code[0] ? who->store_code : NULL;
    ctx->now_ms = clock_now_ms();
    ctx->max_future_ms = ing->opts.max_future_ms;
    ctx->uploaded_late = late;
    ctx->sku_lookup = catalog_sku_lookup;
    ctx->sku_opaque = ing->catalog;
}

/* ---- answers, written straight out ------------------------------------------------------ */

/* A batch's 10,000-item answer built as jansson objects and dumped took, with settling,
 * 130-270 ms of one worker; written out directly (textbuf), 70-110 ms. A single request's
 * answer is the same item result, so both use the writer below. */

static void out_uint(struct textbuf *o, size_t v)
{
    char b[24];

    textbuf_add(o, b, text_uint(b, v));
}

static void out_strs(struct textbuf *o, const char *const *v, size_t n)
{
    textbuf_add(o, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            textbuf_add(o, ",", 1);
        textbuf_add_json(o, v[i]);
    }
    textbuf_add(o, "]", 1);
}

/* The members every item result has (no braces): its status and, once accepted or found to be
 * a duplicate, its event, topic and the codes to look into. */
static void out_result(struct textbuf *o, const struct work *w)
{
    textbuf_adds(o, "\"status\":\"");
    textbuf_adds(o, status_name(w->status));
    textbuf_add(o, "\"", 1);
    if (w->status != ST_REJECTED) {
        textbuf_adds(o, ",\"event_id\":\"");
        textbuf_adds(o, w->item.event_id);
        textbuf_adds(o, "\",\"topic\":\"");
        textbuf_adds(o, topic_of(w));
        textbuf_add(o, "\"", 1);
    }
    if (w->status == ST_ACCEPTED || w->status == ST_DUPLICATE) {
        textbuf_adds(o, ",\"unknown_skus\":");
        out_strs(o, w->item.unknown_skus, w->item.n_unknown_skus);
        textbuf_adds(o, ",\"unmapped_codes\":");
        out_strs(o, w->item.unmapped_codes, w->item.n_unmapped_codes);
    }
}

/* Answer with the text in o (freed); abort when it could not be written (OOM policy). */
static void out_send(struct textbuf *o, struct http_response *resp, int status)
{
    if (o->failed)
        abort(); /* OOM policy */
    http_response_body(resp, status, "application/json", o->p, o->len);
    free(o->p);
}

/* Answer a single-item request from its settled work. */
static void respond_single(struct work *w, struct http_response *resp)
{
    const char *idfield = w->item.kind == POS_ITEM_MOVEMENT  ? "movement_id"
                          : w->item.kind == POS_ITEM_TAKINGS ? "business_date"
                                                             : "transaction_id";

    switch (w->status) {
    case ST_REJECTED:
        http_response_error(resp, w->err.status, w->err.code, w->err.field[0] ? w->err.field : NULL,
                            "%s", w->err.message);
        return;
    case ST_CONFLICT:
        http_response_error(resp, 409, "conflict", idfield,
                            "%s: already used for a different %s (event %s)", idfield, w->type,
                            w->item.event_id);
        return;
    case ST_RETRY:
        http_response_header(resp, "Retry-After", strcmp(w->retry_code, "in_progress") ? "5" : "1");
        http_response_error(resp, 503, w->retry_code, NULL, "%s", w->retry_msg);
        return;
    default: {
        struct textbuf o = {0};

        textbuf_add(&o, "{", 1);
        out_result(&o, w);
        textbuf_add(&o, "}", 1);
        out_send(&o, resp, 202);
    }
    }
}

/* Continuation of a single-item request: settle, answer, free. */
static void finish_single(const struct http_request *req, struct http_response *resp, void *arg)
{
    struct flight *fl = arg;

    (void)req;
    flight_settle(fl);
    respond_single(&fl->ws[0], resp);
    flight_free(fl);
}

static void handle_single(struct ingest *ing, const struct http_request *req,
                          struct http_response *resp, const char *type, parse_fn parse)
{
    struct apikey_principal who;
    struct posjson_ctx ctx;
    struct flight *fl;
    struct work *w;
    char err[256];
    json_t *obj;

    if (authenticate(ing, req, resp, &who) != 0)
        return;
    obj = json_parse_object(req->body, req->body_len, err, sizeof(err));
    if (!obj) {
        http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
        return;
    }
    fl = flight_new(ing, obj, 1, resp, finish_single);
    w = &fl->ws[0];
    w->type = type;
    ctx_init(ing, &who, false, &ctx);
    if (parse(obj, &ctx, &w->item, &w->err) != 0)
        w->status = ST_REJECTED; /* counted by flight_settle */
    flight_end(fl, req);
}

static void on_transaction(const struct http_request *req, struct http_response *resp, void *op)
{
    handle_single(op, req, resp, "transaction", posjson_transaction);
}

static void on_movement(const struct http_request *req, struct http_response *resp, void *op)
{
    handle_single(op, req, resp, "movement", posjson_movement);
}

static void on_takings(const struct http_request *req, struct http_response *resp, void *op)
{
    handle_single(op, req, resp, "takings", posjson_takings);
}

/* One item of a batch's answer: the item result, and where the item stood in the batch. */
static void out_item(struct textbuf *o, const struct work *w)
{
    static const char *const groups[] = {"transactions", "movements"};

    textbuf_add(o, "{", 1);
    out_result(o, w);
    textbuf_adds(o, ",\"type\":\"");
    textbuf_adds(o, w->type);
    textbuf_adds(o, "\",\"index\":");
    out_uint(o, w->index);
    if (w->id) {
        textbuf_adds(o, ",\"id\":");
        textbuf_add_json(o, w->id);
    }
    if (w->status == ST_REJECTED) {
        char field[256], msg[480];

        snprintf(field, sizeof(field), "%s[%zu]%s%s", groups[w->group], w->index,
                 w->err.field[0] ? "." : "", w->err.field);
        snprintf(msg, sizeof(msg), "%s[%zu]%s%s", groups[w->group], w->index,
                 w->err.field[0] ? "." : ": ", w->err.message);
        textbuf_adds(o, ",\"error\":{\"code\":");
        textbuf_add_json(o, w->err.code);
        textbuf_adds(o, ",\"message\":");
        textbuf_add_json(o, msg);
        textbuf_adds(o, ",\"field\":");
        textbuf_add_json(o, field);
        textbuf_add(o, "}", 1);
    } else if (w->status == ST_RETRY) {
        textbuf_adds(o, ",\"error\":{\"code\":");
        textbuf_add_json(o, w->retry_code);
        textbuf_adds(o, ",\"message\":");
        textbuf_add_json(o, w->retry_msg);
        textbuf_add(o, "}", 1);
    } else if (w->status == ST_CONFLICT)
        textbuf_adds(o,
                     ",\"error\":{\"code\":\"conflict\",\"message\":\"the id was already used for "
                     "different content\"}");
    textbuf_add(o, "}", 1);
}

/* Continuation of a batch: settle, answer per item, free. */
static void finish_batch(const struct http_request *req, struct http_response *resp, void *arg)
{
    static const char *const names[] = {"accepted", "duplicate", "rejected", "conflict", "retry"};
    static const enum item_status order[] = {ST_ACCEPTED, ST_DUPLICATE, ST_REJECTED, ST_CONFLICT,
                                             ST_RETRY};
    struct flight *fl = arg;
    struct textbuf o = {0};
    size_t counts[6] = {0};

    (void)req;
    flight_settle(fl);
    for (size_t k = 0; k < fl->n; k++)
        counts[fl->ws[k].status]++;
    for (int i = 0; i < 5; i++) {
        textbuf_adds(&o, i ? ",\"" : "{\"");
        textbuf_adds(&o, names[i]);
        textbuf_adds(&o, "\":");
        out_uint(&o, counts[order[i]]);
    }
    textbuf_adds(&o, ",\"results\":[");
    for (size_t k = 0; k < fl->n; k++) {
        if (k)
            textbuf_add(&o, ",", 1);
        out_item(&o, &fl->ws[k]);
    }
    textbuf_adds(&o, "]}");
    if (counts[ST_RETRY])
        http_response_header(resp, "Retry-After", "5");
    out_send(&o, resp, counts[ST_RETRY] ? 503 : 200);
    flight_free(fl);
}

/* Validate item k of a batch, the index-th of its array g; its id is kept for the answer. it
 * is NULL for an item jansson refused, jerr saying why. */
static void batch_item(struct flight *fl, size_t k, int g, size_t index, const json_t *it,
                       const json_error_t *jerr, const struct posjson_ctx *ctx)
{
    static const char *const types[] = {"transaction", "movement"};
    static const parse_fn parsers[] = {posjson_transaction, posjson_movement};
    struct work *w = &fl->ws[k];
    const char *id =
        json_string_value(json_object_get(it, g == 0 ? "transaction_id" : "movement_id"));

    w->type = types[g];
    w->group = g;
    w->index = index;
    if (id && !(w->id = strdup(id)))
        abort(); /* OOM policy */
    if (!it) {
        w->status = ST_REJECTED;
        w->err.status = 400;
        snprintf(w->err.code, sizeof(w->err.code), "invalid_json");
        snprintf(w->err.message, sizeof(w->err.message), "invalid JSON: %s", jerr->text);
        return;
    }
    if (!json_is_object(it)) {
        w->status = ST_REJECTED;
        w->err.status = 422;
        snprintf(w->err.code, sizeof(w->err.code), "invalid_field");
        snprintf(w->err.message, sizeof(w->err.message), "must be an object");
        return;
    }
    if (parsers[g](it, ctx, &w->item, &w->err) != 0)
        w->status = ST_REJECTED;
}

/*
 * A batch taken item by item, in chunks of FLIGHT_CHUNK items that the handler's thread and a
 * helper take in turn, whichever is free; done[c] once chunk c is validated. The split has
 * already read the whole body as strictly as jansson does (posjson_batch_split), so it is JSON
 * and a chunk may go to the pipeline as soon as it and those before it are validated: claims,
 * sends and marks of the first chunks overlap the validation of the rest.
 */
struct span_work {
    struct flight *fl;
    const char *body;
    const struct posjson_span *sp;
    const struct posjson_ctx *ctx;
    size_t ntx, nchunks;
    atomic_size_t next;
    atomic_uchar *done;
};

/* Validate the next chunk nobody has taken; false when none is left. */
static bool chunk_run(struct span_work *sw)
{
    size_t c = atomic_fetch_add(&sw->next, 1), n = sw->fl->n;

    if (c >= sw->nchunks)
        return false;
    for (size_t k = c * FLIGHT_CHUNK; k < n && k < (c + 1) * FLIGHT_CHUNK; k++) {
        const struct posjson_span *sp = &sw->sp[k];
        json_error_t jerr;
        json_t *it = json_loadb(sw->body + sp->off, sp->len, JSON_REJECT_DUPLICATES, &jerr);

        if (!it) /* the split and jansson disagree: a bug, the fuzz target's to find */
            log_kv(LOG_LVL_ERROR, "batch item the split took is not JSON", "error", jerr.text,
                   NULL);
        batch_item(sw->fl, k, sp->group, sp->group == 0 ? k : k - sw->ntx, it, &jerr, sw->ctx);
        json_decref(it);
    }
    atomic_store_explicit(&sw->done[c], 1, memory_order_release);
    return true;
}

static void *chunk_helper(void *arg)
{
    while (chunk_run(arg))
        ;
    return NULL;
}

/* The fast path: a batch never holds more than one item's tree per thread. Items go to the
 * pipeline in order, from this thread only; the rest after the last chunk (flight_end). */
static void batch_from_spans(struct flight *fl, const char *body, const struct posjson_span *sp,
                             const struct posjson_ctx *ctx)
{
    struct span_work sw = {.fl = fl, .body = body, .sp = sp, .ctx = ctx};
    size_t added = 0;
    pthread_t helper;
    bool two = false;

    while (sw.ntx < fl->n && sp[sw.ntx].group == 0)
        sw.ntx++;
    sw.nchunks = (fl->n + FLIGHT_CHUNK - 1) / FLIGHT_CHUNK;
    sw.done = calloc(sw.nchunks, sizeof(*sw.done));
    if (!sw.done)
        abort(); /* OOM policy */
    if (fl->n >= BATCH_SPLIT_MIN)
        two = pthread_create(&helper, NULL, chunk_helper, &sw) == 0;
    while (chunk_run(&sw))
        while (added < sw.nchunks && atomic_load_explicit(&sw.done[added], memory_order_acquire))
            if (++added < sw.nchunks)
                flight_add(fl, added * FLIGHT_CHUNK);
    if (two)
        pthread_join(helper, NULL);
    free(sw.done);
}

/* The whole body as one tree: for any body the fast path does not take, and to name the
 * problem of a body that is not a batch. Returns the flight, or NULL with resp filled. */
static struct flight *batch_from_tree(struct ingest *ing, const struct http_request *req,
                                      struct http_response *resp, const struct posjson_ctx *ctx)
{
    static const char *const groups[] = {"transactions", "movements"};
    json_t *obj, *arr[2] = {NULL, NULL};
    struct flight *fl;
    size_t n = 0, k = 0;
    const char *key;
    json_t *v;
    char err[256];

    obj = json_parse_object(req->body, req->body_len, err, sizeof(err));
    if (!obj) {
        http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
        return NULL;
    }
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "transactions") != 0 && strcmp(key, "movements") != 0) {
            http_response_error(resp, 422, "unknown_field", key,
                                "%s: unknown field (a batch has transactions and movements)", key);
            goto out_bad;
        }
        (void)v;
    }
    for (int g = 0; g < 2; g++) {
        arr[g] = json_object_get(obj, groups[g]);
        if (arr[g] && !json_is_array(arr[g])) {
            http_response_error(resp, 422, "invalid_field", groups[g], "%s: must be an array",
                                groups[g]);
            goto out_bad;
        }
        n += json_array_size(arr[g]);
    }
    if (n == 0) {
        http_response_error(resp, 422, "missing_field", "transactions",
                            "transactions: a batch needs at least one transaction or movement");
        goto out_bad;
    }
    if (n > (size_t)ing->opts.batch_max_items) {
        http_response_error(resp, 422, "too_many", "transactions",
                            "transactions: %zu items exceed the batch limit of %ld", n,
                            ing->opts.batch_max_items);
        goto out_bad;
    }
    fl = flight_new(ing, obj, n, resp, finish_batch);
    for (int g = 0; g < 2; g++)
        for (size_t i = 0; i < json_array_size(arr[g]); i++, k++)
            batch_item(fl, k, g, i, json_array_get(arr[g], i), NULL, ctx);
    return fl;
out_bad:
    json_decref(obj);
    return NULL;
}

static void on_batch(const struct http_request *req, struct http_response *resp, void *op)
{
    struct ingest *ing = op;
    struct apikey_principal who;
    struct posjson_ctx ctx;
    struct posjson_span *spans;
    struct flight *fl = NULL;
    int n;

    if (authenticate(ing, req, resp, &who) != 0)
        return;
    ctx_init(ing, &who, true, &ctx);
    n = posjson_batch_split(req->body, req->body_len, (size_t)ing->opts.batch_max_items, &spans);
    if (n > 0) {
        fl = flight_new(ing, NULL, (size_t)n, resp, finish_batch);
        batch_from_spans(fl, req->body, spans, &ctx);
        free(spans);
    } else {
        /* anything the split does not take is parsed whole first: a body that is not JSON
         * publishes nothing */
        if (!(fl = batch_from_tree(ing, req, resp, &ctx)))
            return;
        for (size_t k = FLIGHT_CHUNK; k < fl->n; k += FLIGHT_CHUNK)
            flight_add(fl, k);
    }
    flight_end(fl, req);
}

/* ?since= as RFC 3339 or Unix ms; absent = everything. */
static int since_param(const struct http_request *req, struct http_response *resp, int64_t *since)
{
    const char *s = http_request_query(req, "since");
    char *end;

    *since = 0;
    if (!s || !*s)
        return 0;
    if (clock_parse_rfc3339(s, since) == 0)
        return 0;
    errno = 0;
    *since = strtoll(s, &end, 10);
    if (errno || *end || *since < 0) {
        http_response_error(resp, 400, "invalid_parameter", "since",
                            "since: \"%s\" is neither RFC 3339 nor Unix milliseconds", s);
        return -EINVAL;
    }
    return 0;
}

static void catalog_reply(struct ingest *ing, const struct http_request *req,
                          struct http_response *resp, bool prices)
{
    struct apikey_principal who;
    const char *ls = http_request_query(req, "limit");
    long limit = 1000;
    int64_t since;
    bool more;
    json_t *items;
    char now[32], *end;

    if (authenticate(ing, req, resp, &who) != 0 || since_param(req, resp, &since) != 0)
        return;
    if (ls) {
        errno = 0;
        limit = strtol(ls, &end, 10);
        if (errno || *end || limit < 1 || limit > 10000) {
            http_response_error(resp, 400, "invalid_parameter", "limit",
                                "limit: must be an integer from 1 to 10000");
            return;
        }
    }
    clock_format_rfc3339(clock_now_ms(), now, sizeof(now));
    items = catalog_list(ing->catalog, since, prices, (size_t)limit, &more);
    http_response_json(resp, 200,
                       json_pack("{s:s, s:I, s:b, s:o}", "as_of", now, "count",
                                 (json_int_t)json_array_size(items), "truncated", (int)more,
                                 "items", items));
}

static void on_catalog_items(const struct http_request *req, struct http_response *resp, void *op)
{
    catalog_reply(op, req, resp, false);
}

static void on_price_changes(const struct http_request *req, struct http_response *resp, void *op)
{
    catalog_reply(op, req, resp, true);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

struct ingest *ingest_new(struct service *svc, const struct ingest_opts *opts,
                          const struct mapping *mapping, struct catalog *catalog,
                          struct apikeys *keys)
{
    struct ingest *ing = calloc(1, sizeof(*ing));
    char err[256];
    const struct http_route routes[] = {
        {"POST", "/v1/transactions", on_transaction, ing, 0, "application/json", 0},
        {"POST", "/v1/movements", on_movement, ing, 0, "application/json", 0},
        {"POST", "/v1/takings", on_takings, ing, 0, "application/json", 0},
        {"POST", "/v1/batches", on_batch, ing, (size_t)opts->batch_max_body, "application/json",
         (unsigned)opts->batch_concurrency},
        {"GET", "/v1/catalog/items", on_catalog_items, ing, 0, NULL, 0},
        {"GET", "/v1/catalog/price-changes", on_price_changes, ing, 0, NULL, 0},
    };

    if (!ing)
        abort(); /* OOM policy */
    ing->svc = svc;
    ing->opts = *opts;
    ing->mapping = mapping;
    ing->catalog = catalog;
    ing->keys = keys;
    ing->pipeline = pipeline_new(svc->pg, opts->claim_lease_ms, err, sizeof(err));
    if (!ing->pipeline) {
        log_kv(LOG_LVL_ERROR, "ingest pipeline not started", "reason", err, NULL);
        free(ing);
        return NULL;
    }
    memcpy(ing->routes, routes, sizeof(routes));
    pthread_mutex_init(&ing->raised_lock, NULL);
    ing->raised = json_object();
    ing->items_total =
        metrics_counter(svc->metrics, "pos_ingest_items_total",
                        "Till items by type and outcome (accepted, duplicate, rejected, conflict, "
                        "retry)",
                        "type,status");
    ing->item_cache = metrics_gauge(svc->metrics, "pos_ingest_item_cache_bytes",
                                    "Memory of answered requests' items kept for the next items "
                                    "(at most POS_ITEM_CACHE_MB)",
                                    NULL);
    return ing;
}

const struct http_route *ingest_routes(struct ingest *ing, size_t *n)
{
    *n = sizeof(ing->routes) / sizeof(ing->routes[0]);
    return ing->routes;
}

void ingest_close(struct ingest *ing)
{
    if (ing)
        pipeline_close(ing->pipeline);
}

void ingest_free(struct ingest *ing)
{
    if (!ing)
        return;
    pipeline_free(ing->pipeline);
    json_decref(ing->raised);
    pthread_mutex_destroy(&ing->raised_lock);
    free(ing);
}
