/*
 * Integration tests of loyalty-sync's engine against the real stack (Postgres, Redis, the Kafka
 * mock) and the platform simulator (tests/sim/platform-sim) with its Shopify loyalty-app
 * stand-in answering 409 on 30% of points writes (plus its write-window collisions).
 *
 * Rules used throughout (hand arithmetic below relies on them): 1 point per 1.00 of net amount
 * before tax, paid trigger, BAG and GIFTCARD lines earn nothing, double points on 2024-11-29.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "events.h"
#include "kafka.h"
#include "loyalty.h"
#include "member_api.h"
#include "rules.h"
#include "service.h"
#include "uuid.h"

#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"

static const char *rules_json =
    "{\"tenants\": {\"*\": {\"rule_id\": \"it-1\", \"points_per_unit\": 1, \"unit_minor\": 100,"
    " \"basis\": \"net_before_tax\", \"trigger\": \"paid\","
    " \"exclude\": {\"non_stock_codes\": [\"BAG\"], \"gift_cards\": true,"
    "  \"gift_card_codes\": [\"GIFTCARD\"]},"
    " \"multipliers\": [{\"from\": \"2024-11-29\", \"to\": \"2024-11-29\", \"percent\": 200}]}}}";

#define SHOP       "ls-it.myshopify.com"
#define DAY_NORMAL "2024-11-20T10:00:00Z"
#define DAY_DOUBLE "2024-11-29T10:00:00Z"

static struct service svc;
static struct service_spec spec = {
    .name = "loyalty-sync", .kafka = true, .postgres = true, .redis = true};
static struct rules rules;
static struct member_api *api;
static struct loyalty *eng;
static pid_t sim_pid;
static char sim_url[128];
static char run_id[40];

/* ---- small HTTP client for the simulator's control API */

struct sbuf {
    char *p;
    size_t n;
};

static size_t sbuf_write(char *d, size_t s, size_t m, void *o)
{
    struct sbuf *b = o;
    char *np = realloc(b->p, b->n + s * m + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, d, s * m);
    b->p = np;
    b->n += s * m;
    b->p[b->n] = '\0';
    return s * m;
}

static json_t *sim_call(const char *method, const char *path, const char *body, long *status)
{
    char url[512];
    struct sbuf b = {0};
    snprintf(url, sizeof url, "%s%s", sim_url, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbuf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (status)
        *status = rc == CURLE_OK ? st : -1;
    json_t *j = b.p ? json_loads(b.p, 0, NULL) : NULL;
    free(b.p);
    return j;
}

static void sim_config(const char *body)
{
    long st = 0;
    json_decref(sim_call("POST", "/_sim/shops/" SHOP "/config", body, &st));
    assert_int_equal(st, 200);
}

static char *sim_add_member(const char *email, const char *phone)
{
    char body[256];
    long st = 0;
    snprintf(body, sizeof body, "{\"email\": %s%s%s, \"phone\": %s%s%s}", email ? "\"" : "",
             email ? email : "null", email ? "\"" : "", phone ? "\"" : "", phone ? phone : "null",
             phone ? "\"" : "");
    json_t *j = sim_call("POST", "/_sim/shops/" SHOP "/members", body, &st);
    assert_int_equal(st, 201);
    char *id = strdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return id;
}

/* Balance of the one member matching email (or phone); fails when not exactly one. */
static int64_t balance_of(const char *email, const char *phone)
{
    struct member m[4];
    size_t n = 0;
    char err[256];
    assert_int_equal(member_api_find(api, email, phone, m, 4, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    return m[0].points;
}

static size_t members_matching(const char *email, const char *phone)
{
    struct member m[8];
    size_t n = 0;
    char err[256];
    assert_int_equal(member_api_find(api, email, phone, m, 8, &n, err, sizeof err), 0);
    return n;
}

static int64_t ms_of(const char *rfc)
{
    int64_t ms = 0;
    assert_int_equal(clock_parse_rfc3339(rfc, &ms), 0);
    return ms;
}

/* ---- event builders */

struct tline {
    int64_t qty;
    int64_t net; /* minor units, signed like qty: as priced at the till */
    const char *non_stock;
    int64_t vat_included; /* VAT inside net (a tax line included_in_price), 0 = none */
};

struct pos_spec {
    const char *txn;
    Tillsync__V1__TransactionKind kind;
    const char *when;
    const char *email, *phone, *loyalty_id;
    const struct tline *lines;
    size_t nlines;
    const char *orig_txn, *orig_order, *voided;
};

static uint8_t *pos_pack(const struct pos_spec *s, size_t *len, char *event_id)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__PosTransaction t = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__Customer cu = TILLSYNC__V1__CUSTOMER__INIT;
    Tillsync__V1__TransactionLine ln[8];
    Tillsync__V1__TransactionLine *lp[8];
    Tillsync__V1__Money m[8], tm[8];
    Tillsync__V1__TaxLine tx[8];
    Tillsync__V1__TaxLine *txp[8];
    char ids[8][16], name[200];
    snprintf(name, sizeof name, "it/%s/pos/%s", run_id, s->txn);
    uuid_from_name(name, event_id);
    env.event_id = event_id;
    env.tenant_id = "it";
    env.occurred_at_ms = ms_of(s->when);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    cu.email = (char *)(s->email ? s->email : "");
    cu.phone = (char *)(s->phone ? s->phone : "");
    cu.loyalty_id = (char *)(s->loyalty_id ? s->loyalty_id : "");
    for (size_t i = 0; i < s->nlines; i++) {
        tillsync__v1__transaction_line__init(&ln[i]);
        tillsync__v1__money__init(&m[i]);
        snprintf(ids[i], sizeof ids[i], "l%zu", i);
        ln[i].line_id = ids[i];
        ln[i].quantity = s->lines[i].qty;
        if (s->lines[i].non_stock)
            ln[i].non_stock_code = (char *)s->lines[i].non_stock;
        else
            ln[i].sku = "SKU-1";
        m[i].minor_units = s->lines[i].net;
        m[i].currency = "GBP";
        ln[i].net_amount = &m[i];
        if (s->lines[i].vat_included) {
            tillsync__v1__tax_line__init(&tx[i]);
            tillsync__v1__money__init(&tm[i]);
            tm[i].minor_units = s->lines[i].vat_included;
            tm[i].currency = "GBP";
            tx[i].code = "VAT";
            tx[i].rate_ppm = 200000;
            tx[i].amount = &tm[i];
            tx[i].included_in_price = true;
            txp[i] = &tx[i];
            ln[i].tax_lines = &txp[i];
            ln[i].n_tax_lines = 1;
        }
        lp[i] = &ln[i];
    }
    t.transaction_id = (char *)s->txn;
    t.store_code = "S1";
    t.till_id = "T1";
    t.kind = s->kind;
    t.lines = lp;
    t.n_lines = s->nlines;
    t.customer = &cu;
    t.currency = "GBP";
    if (s->orig_txn)
        t.original_transaction_id = (char *)s->orig_txn;
    if (s->orig_order)
        t.original_platform_order_id = (char *)s->orig_order;
    if (s->voided)
        t.voided_transaction_id = (char *)s->voided;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &t;
    *len = tillsync__v1__pos_transaction_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    tillsync__v1__pos_transaction_event__pack(&ev, buf);
    return buf;
}

static void pos_apply(const struct pos_spec *s)
{
    size_t len;
    char id[37], err[256] = "";
    uint8_t *buf = pos_pack(s, &len, id);
    int rc = loyalty_handle(eng, "pos.transactions.v1", buf, len, err, sizeof err);
    if (rc)
        print_error("loyalty_handle(%s): %s\n", s->txn, err);
    assert_int_equal(rc, 0);
    free(buf);
}

struct oline {
    int64_t qty;
    int64_t unit;
    const char *ledger;
};

struct order_spec {
    const char *order_id;
    Tillsync__V1__OrderEventKind kind;
    const char *financial;
    const char *when;
    const char *email, *phone;
    const struct oline *lines;
    size_t nlines;
    const char *refund_id;
    const int64_t *refund_subtotals; /* per order line, 0 = not refunded */
};

static uint8_t *order_pack(const struct order_spec *s, size_t *len, char *event_id)
{
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__PlatformId pid = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__Customer cu = TILLSYNC__V1__CUSTOMER__INIT;
    Tillsync__V1__Refund rf = TILLSYNC__V1__REFUND__INIT;
    Tillsync__V1__OrderLine ln[8];
    Tillsync__V1__OrderLine *lp[8];
    Tillsync__V1__RefundLine rl[8];
    Tillsync__V1__RefundLine *rlp[8];
    Tillsync__V1__Money m[8], rm[8];
    char ids[8][16], name[200];
    size_t nr = 0;
    snprintf(name, sizeof name, "it/%s/order/%s/%d/%s", run_id, s->order_id, (int)s->kind,
             s->refund_id ? s->refund_id : "");
    uuid_from_name(name, event_id);
    env.event_id = event_id;
    env.tenant_id = "it";
    env.occurred_at_ms = ms_of(s->when);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY;
    cu.email = (char *)(s->email ? s->email : "");
    cu.phone = (char *)(s->phone ? s->phone : "");
    for (size_t i = 0; i < s->nlines; i++) {
        tillsync__v1__order_line__init(&ln[i]);
        tillsync__v1__money__init(&m[i]);
        snprintf(ids[i], sizeof ids[i], "ol%zu", i);
        ln[i].line_id = ids[i];
        ln[i].quantity = s->lines[i].qty;
        m[i].minor_units = s->lines[i].unit;
        m[i].currency = "GBP";
        ln[i].unit_price = &m[i];
        if (s->lines[i].ledger)
            ln[i].ledger_code = (char *)s->lines[i].ledger;
        lp[i] = &ln[i];
        if (s->refund_subtotals && s->refund_subtotals[i]) {
            tillsync__v1__refund_line__init(&rl[nr]);
            tillsync__v1__money__init(&rm[nr]);
            rl[nr].line_id = ids[i];
            rl[nr].quantity = 1;
            rm[nr].minor_units = s->refund_subtotals[i];
            rm[nr].currency = "GBP";
            rl[nr].subtotal = &rm[nr];
            rlp[nr] = &rl[nr];
            nr++;
        }
    }
    pid.id = (char *)s->order_id;
    o.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    o.shop_id = SHOP;
    o.order = &pid;
    o.lines = lp;
    o.n_lines = s->nlines;
    o.customer = &cu;
    o.currency = "GBP";
    o.financial_status = (char *)(s->financial ? s->financial : "pending");
    ev.envelope = &env;
    ev.kind = s->kind;
    ev.order = &o;
    if (s->refund_id) {
        rf.refund_id = (char *)s->refund_id;
        rf.lines = rlp;
        rf.n_lines = nr;
        ev.refund = &rf;
    }
    *len = tillsync__v1__shop_order_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    tillsync__v1__shop_order_event__pack(&ev, buf);
    return buf;
}

static void order_apply(const struct order_spec *s)
{
    size_t len;
    char id[37], err[256] = "";
    uint8_t *buf = order_pack(s, &len, id);
    int rc = loyalty_handle(eng, "shop.orders.v1", buf, len, err, sizeof err);
    if (rc)
        print_error("loyalty_handle(%s): %s\n", s->order_id, err);
    assert_int_equal(rc, 0);
    free(buf);
}

/* ---- setup: simulator, database, service parts, engine */

static int sim_start(void)
{
    char portfile[64], script[512];
    const char *src = getenv("TILLSYNC_SOURCE_DIR");
    snprintf(portfile, sizeof portfile, "/tmp/ls-it-sim-%d.port", (int)getpid());
    snprintf(script, sizeof script, "%s/tests/sim/platform-sim", src ? src : ".");
    unlink(portfile);
    sim_pid = fork();
    if (sim_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execlp("python3", "python3", script, "--port", "0", "--port-file", portfile, "--seed", "11",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(portfile, "r");
        long port = 0;
        if (f) {
            char line[32] = "";
            if (fgets(line, sizeof line, f))
                port = strtol(line, NULL, 10);
            fclose(f);
        }
        if (port > 0) {
            snprintf(sim_url, sizeof sim_url, "http://127.0.0.1:%ld", port);
            unlink(portfile);
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

static int create_db(char *url_out, size_t cap)
{
    const char *base = getenv("DATABASE_URL");
    char sql[128];
    PGconn *c = PQconnectdb(base);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return -1;
    }
    snprintf(sql, sizeof sql, "CREATE DATABASE loyalty_it_%d", (int)getpid());
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    const char *slash = strrchr(base, '/');
    snprintf(url_out, cap, "%.*s/loyalty_it_%d", (int)(slash - base), base, (int)getpid());
    return ok ? 0 : -1;
}

static struct loyalty *engine_new(int max_retries)
{
    char err[256];
    struct loyalty_opts lo = {
        .svc = &svc,
        .rules = &rules,
        .api = api,
        .platform = MEMBER_PLATFORM_LOYALTY_APP,
        .shop = SHOP,
        .default_cc = "44",
        .max_retries = max_retries,
        .backoff_base_ms = 10,
        .backoff_max_ms = 300,
        .lock_ttl_ms = 10000,
        .lock_wait_ms = 10000,
    };
    struct loyalty *l = loyalty_new(&lo, err, sizeof err);
    assert_non_null(l);
    return l;
}

static int setup(void **state)
{
    char err[256], dburl[512], mig[512], prefix[64];
    long st = 0;
    (void)state;
    if (!getenv("DATABASE_URL") || !getenv("REDIS_URL") || !getenv("KAFKA_BROKERS")) {
        print_error("run through tests/lib/with-stack\n");
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uuid_v7(run_id);
    if (sim_start()) {
        print_error("simulator did not start\n");
        return -1;
    }
    json_decref(sim_call("POST", "/_sim/shops",
                         "{\"platform\": \"shopify\", \"domain\": \"" SHOP "\", \"token\": \"tok\","
                         " \"loyalty\": {\"conflict_rate\": 0.3, \"order_window\": 0,"
                         " \"write_window\": 0.05}}",
                         &st));
    if (st != 201 && st != 200) {
        print_error("shop not created: %ld\n", st);
        return -1;
    }
    if (create_db(dburl, sizeof dburl)) {
        print_error("database not created\n");
        return -1;
    }
    snprintf(mig, sizeof mig, "%s/services/loyalty-sync/migrations",
             getenv("TILLSYNC_SOURCE_DIR") ? getenv("TILLSYNC_SOURCE_DIR") : ".");
    snprintf(prefix, sizeof prefix, "it%d.", (int)getpid());
    setenv("DATABASE_URL", dburl, 1);
    setenv("MIGRATIONS_DIR", mig, 1);
    setenv("TENANT_ID", "it", 1);
    setenv("TOPIC_PREFIX", prefix, 1);
    setenv("LOG_LEVEL", "warn", 1);
    if (service_init(&svc, &spec, err, sizeof err) || service_connect(&svc, err, sizeof err)) {
        print_error("service: %s\n", err);
        return -1;
    }
    if (rules_parse(rules_json, strlen(rules_json), "it", &rules, err, sizeof err)) {
        print_error("rules: %s\n", err);
        return -1;
    }
    struct member_api_opts ao = {
        .platform = MEMBER_PLATFORM_LOYALTY_APP,
        .base_url = sim_url,
        .token = "tok",
        .timeout_ms = 5000,
        .redis = svc.redis,
        .bucket = {.key = "tillsync:rl:it:" SHOP ":loyalty", .capacity = 200, .refill_per_s = 200}};
    api = member_api_new(&ao, err, sizeof err);
    eng = engine_new(30);
    return api ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    loyalty_free(eng);
    member_api_free(api);
    rules_release(&rules);
    service_release(&svc);
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        waitpid(sim_pid, NULL, 0);
    }
    curl_global_cleanup();
    return 0;
}

#define N(a)       (sizeof(a) / sizeof((a)[0]))
#define SALE       TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE
#define RETURN     TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN
#define EXCHANGE   TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_EXCHANGE
#define VOID       TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID
#define O_CREATED  TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED
#define O_PAID     TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PAID
#define O_UPDATED  TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_UPDATED
#define O_REFUNDED TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED

/* Online refunds: full in two halves, a gift-card-only refund, and a partial with rounding. */
static void test_online_refunds(void **state)
{
    (void)state;
    free(sim_add_member("alice@example.com", NULL));
    const struct oline a1[] = {{2, 5000, NULL}, {1, 2500, "GIFTCARD"}};
    struct order_spec o = {"A1", O_CREATED, "pending", DAY_NORMAL, "alice@example.com",
                           NULL, a1,        N(a1),     NULL,       NULL};
    order_apply(&o);
    assert_int_equal(balance_of("alice@example.com", NULL), 0); /* not paid yet */
    o.kind = O_PAID;
    o.financial = "paid";
    order_apply(&o); /* 2 × 50.00 = 100 points; the gift card earns nothing */
    assert_int_equal(balance_of("alice@example.com", NULL), 100);
    order_apply(&o); /* redelivered */
    o.kind = O_UPDATED;
    order_apply(&o); /* another event of a paid order: same award key */
    assert_int_equal(balance_of("alice@example.com", NULL), 100);

    const int64_t r1[] = {5000, 0}, r2[] = {0, 2500};
    struct order_spec rf = {
        "A1", O_REFUNDED, "partially_refunded", DAY_NORMAL, "alice@example.com", NULL, a1, N(a1),
        "R1", r1};
    order_apply(&rf); /* 50.00 of 100.00 back: 50 points */
    order_apply(&rf);
    assert_int_equal(balance_of("alice@example.com", NULL), 50);
    rf.refund_id = "R2";
    rf.refund_subtotals = r2;
    order_apply(&rf); /* the gift card refunded: nothing to take back */
    assert_int_equal(balance_of("alice@example.com", NULL), 50);
    rf.refund_id = "R3";
    rf.refund_subtotals = r1;
    order_apply(&rf); /* the rest: 50 more */
    assert_int_equal(balance_of("alice@example.com", NULL), 0);

    /* 3 × 33.33 = 99.99 → 99 points; refunds of 33.33: floor(99×3333/9999) = 33, then 66−33 */
    const struct oline a2[] = {{3, 3333, NULL}};
    const int64_t r4[] = {3333};
    struct order_spec o2 = {"A2", O_PAID, "paid", DAY_NORMAL, "alice@example.com",
                            NULL, a2,     N(a2),  NULL,       NULL};
    order_apply(&o2);
    assert_int_equal(balance_of("alice@example.com", NULL), 99);
    o2.kind = O_REFUNDED;
    o2.refund_id = "R4";
    o2.refund_subtotals = r4;
    order_apply(&o2);
    assert_int_equal(balance_of("alice@example.com", NULL), 66);
    o2.refund_id = "R5";
    order_apply(&o2);
    assert_int_equal(balance_of("alice@example.com", NULL), 33);
}

/* Till: sale with an excluded bag, return with receipt, a voided sale. */
static void test_store_return_and_void(void **state)
{
    (void)state;
    free(sim_add_member("bob@example.com", NULL));
    const struct tline b1[] = {{1, 8000, NULL, 0}, {1, 4000, NULL, 0}, {1, 10, "BAG", 0}};
    struct pos_spec s = {"B1", SALE, DAY_NORMAL, "bob@example.com", NULL, NULL, b1, N(b1),
                         NULL, NULL, NULL};
    pos_apply(&s); /* 120.00 → 120; the bag earns nothing */
    assert_int_equal(balance_of("bob@example.com", NULL), 120);
    const struct tline b2[] = {{-1, -4000, NULL, 0}};
    struct pos_spec r = {"B2", RETURN, DAY_NORMAL, "bob@example.com", NULL, NULL, b2, N(b2),
                         "B1", NULL,   NULL};
    pos_apply(&r); /* 40.00 of 120.00 back: 40 */
    pos_apply(&r);
    assert_int_equal(balance_of("bob@example.com", NULL), 80);
    const struct tline b4[] = {{1, 3000, NULL, 0}};
    struct pos_spec s4 = {"B4", SALE, DAY_NORMAL, "bob@example.com", NULL, NULL, b4, N(b4),
                          NULL, NULL, NULL};
    pos_apply(&s4);
    assert_int_equal(balance_of("bob@example.com", NULL), 110);
    struct pos_spec v = {"B5", VOID, DAY_NORMAL, "bob@example.com", NULL, NULL, NULL, 0,
                         NULL, NULL, "B4"};
    pos_apply(&v); /* the whole 30 back */
    assert_int_equal(balance_of("bob@example.com", NULL), 80);
}

/* Prices with VAT included (UK, EU tills): "net before tax" takes the VAT out, on the sale
 * and on its return alike. */
static void test_vat_included(void **state)
{
    (void)state;
    free(sim_add_member("vera@example.com", NULL));
    const struct tline v1[] = {{1, 12000, NULL, 2000}, {1, 600, NULL, 100}};
    struct pos_spec s = {"V1", SALE, DAY_NORMAL, "vera@example.com", NULL, NULL, v1, N(v1),
                         NULL, NULL, NULL};
    pos_apply(&s); /* 126.00 with 21.00 VAT inside: 105.00 before tax → 105 */
    assert_int_equal(balance_of("vera@example.com", NULL), 105);
    const struct tline v2[] = {{-1, -12000, NULL, 2000}};
    struct pos_spec r = {"V2", RETURN, DAY_NORMAL, "vera@example.com", NULL, NULL, v2, N(v2),
                         "V1", NULL,   NULL};
    pos_apply(&r); /* 100.00 of 105.00 before tax back: 100 */
    assert_int_equal(balance_of("vera@example.com", NULL), 5);
}

/* Cross-channel: a store return of an online order; a refund that arrives before the award. */
static void test_cross_channel(void **state)
{
    (void)state;
    free(sim_add_member("carol@example.com", NULL));
    const struct oline c1[] = {{1, 8000, NULL}};
    struct order_spec o = {"C1", O_PAID, "paid", DAY_NORMAL, "carol@example.com",
                           NULL, c1,     N(c1),  NULL,       NULL};
    order_apply(&o);
    assert_int_equal(balance_of("carol@example.com", NULL), 80);
    const struct tline t[] = {{-1, -3000, NULL, 0}};
    struct pos_spec r = {"TC1", RETURN, DAY_NORMAL, "carol@example.com", NULL, NULL, t, N(t),
                         NULL,  "C1",   NULL};
    pos_apply(&r); /* 30.00 of the 80.00 order returned in store: 30 */
    assert_int_equal(balance_of("carol@example.com", NULL), 50);

    /* the refund of C2 is consumed before its paid event: it waits, then follows the award */
    const struct oline c2[] = {{2, 1000, NULL}};
    const int64_t rr[] = {1000};
    struct order_spec early = {
        "C2",  O_REFUNDED, "partially_refunded", DAY_NORMAL, "carol@example.com", NULL, c2, N(c2),
        "RC2", rr};
    struct loyalty_stats before, after;
    loyalty_stats_get(eng, &before);
    order_apply(&early);
    loyalty_stats_get(eng, &after);
    assert_int_equal(after.waiting, before.waiting + 1);
    assert_int_equal(balance_of("carol@example.com", NULL), 50);
    struct order_spec paid = {"C2", O_PAID, "paid", DAY_NORMAL, "carol@example.com",
                              NULL, c2,     N(c2),  NULL,       NULL};
    order_apply(&paid); /* +20, then the waiting −10 */
    assert_int_equal(balance_of("carol@example.com", NULL), 60);
}

/* Exchanges net out: more spent earns the difference, even earns nothing, less reverses. */
static void test_exchanges(void **state)
{
    (void)state;
    free(sim_add_member("dave@example.com", NULL));
    const struct tline d1[] = {{1, 6000, NULL, 0}};
    struct pos_spec s = {"D1", SALE, DAY_NORMAL, "dave@example.com", NULL, NULL, d1, N(d1),
                         NULL, NULL, NULL};
    pos_apply(&s);
    assert_int_equal(balance_of("dave@example.com", NULL), 60);
    const struct tline d2[] = {{-1, -6000, NULL, 0}, {1, 7500, NULL, 0}};
    struct pos_spec x = {"D2", EXCHANGE, DAY_NORMAL, "dave@example.com", NULL, NULL, d2, N(d2),
                         "D1", NULL,     NULL};
    pos_apply(&x); /* net +15.00: 15 */
    assert_int_equal(balance_of("dave@example.com", NULL), 75);
    const struct tline d3[] = {{-1, -2000, NULL, 0}, {1, 2000, NULL, 0}};
    struct pos_spec e = {"D3", EXCHANGE, DAY_NORMAL, "dave@example.com", NULL, NULL, d3, N(d3),
                         "D1", NULL,     NULL};
    pos_apply(&e); /* even: nothing */
    assert_int_equal(balance_of("dave@example.com", NULL), 75);
    const struct tline d4[] = {{-1, -3000, NULL, 0}, {1, 1000, NULL, 0}};
    struct pos_spec l = {"D4", EXCHANGE, DAY_NORMAL, "dave@example.com", NULL, NULL, d4, N(d4),
                         "D1", NULL,     NULL};
    pos_apply(&l); /* net −20.00 against D1's 60.00: floor(60×2000/6000) = 20 back */
    assert_int_equal(balance_of("dave@example.com", NULL), 55);
}

/* A bonus day doubles the award; a later return takes back in proportion to what was given. */
static void test_multiplier(void **state)
{
    (void)state;
    free(sim_add_member("erin@example.com", NULL));
    const struct tline e1[] = {{1, 1000, NULL, 0}};
    struct pos_spec s = {"E1", SALE, DAY_DOUBLE, "erin@example.com", NULL, NULL, e1, N(e1),
                         NULL, NULL, NULL};
    pos_apply(&s);
    assert_int_equal(balance_of("erin@example.com", NULL), 20);
    const struct tline e2[] = {{-1, -500, NULL, 0}};
    struct pos_spec r = {"E2", RETURN, DAY_NORMAL, "erin@example.com", NULL, NULL, e2, N(e2),
                         "E1", NULL,   NULL};
    pos_apply(&r); /* half of the 20 */
    assert_int_equal(balance_of("erin@example.com", NULL), 10);
}

/* Identity: one phone written three ways, an email in other case, two members on one phone. */
static void test_identity(void **state)
{
    (void)state;
    const struct tline t10[] = {{1, 1000, NULL, 0}}, t20[] = {{1, 2000, NULL, 0}},
                       t30[] = {{1, 3000, NULL, 0}};
    struct pos_spec p1 = {"P1", SALE, DAY_NORMAL, NULL, "07700 900123", NULL, t10,
                          1,    NULL, NULL,       NULL};
    pos_apply(&p1); /* nobody yet: a member is created with the E.164 phone */
    struct pos_spec p2 = {"P2", SALE, DAY_NORMAL, NULL, "+44 7700 900123", NULL, t20,
                          1,    NULL, NULL,       NULL};
    pos_apply(&p2);
    struct pos_spec p3 = {"P3", SALE, DAY_NORMAL, NULL, "0044 (0)7700-900123", NULL, t30,
                          1,    NULL, NULL,       NULL};
    pos_apply(&p3);
    assert_int_equal(members_matching(NULL, "+447700900123"), 1);
    assert_int_equal(balance_of(NULL, "+447700900123"), 60);

    free(sim_add_member("Frank@Example.com", NULL));
    const struct tline t15[] = {{1, 1500, NULL, 0}};
    struct pos_spec f = {"F1", SALE, DAY_NORMAL, "  FRANK@example.COM ", NULL, NULL, t15, 1,
                         NULL, NULL, NULL};
    pos_apply(&f);
    assert_int_equal(members_matching("frank@example.com", NULL), 1);
    assert_int_equal(balance_of("frank@example.com", NULL), 15);

    free(sim_add_member("gina@example.com", "+447700900999"));
    free(sim_add_member("hank@example.com", "+447700900999"));
    struct loyalty_stats before, after;
    loyalty_stats_get(eng, &before);
    const struct tline t40[] = {{1, 4000, NULL, 0}}, t25[] = {{1, 2500, NULL, 0}};
    struct pos_spec g1 = {"G1", SALE, DAY_NORMAL, NULL, "07700 900999", NULL, t40,
                          1,    NULL, NULL,       NULL};
    pos_apply(&g1); /* phone only, two members: not guessed */
    loyalty_stats_get(eng, &after);
    assert_int_equal(after.ambiguous, before.ambiguous + 1);
    assert_int_equal(balance_of("gina@example.com", NULL), 0);
    assert_int_equal(balance_of("hank@example.com", NULL), 0);
    assert_int_equal(members_matching(NULL, "+447700900999"), 2); /* nobody created */
    struct pos_spec g2 = {"G2", SALE, DAY_NORMAL, "gina@example.com", "07700 900999", NULL, t25, 1,
                          NULL, NULL, NULL};
    pos_apply(&g2); /* the email decides */
    assert_int_equal(balance_of("gina@example.com", NULL), 25);
    assert_int_equal(balance_of("hank@example.com", NULL), 0);
}

/* Retries exhausted → failed and kept; the replay applies it once the platform calms down. */
static void test_failure_and_replay(void **state)
{
    char err[256];
    size_t done = 0, open = 0;
    (void)state;
    free(sim_add_member("xena@example.com", NULL));
    sim_config("{\"loyalty\": {\"conflict_rate\": 1.0}}");
    struct loyalty *strict = engine_new(2);
    struct loyalty *keep = eng;
    eng = strict;
    const struct tline t[] = {{1, 1200, NULL, 0}};
    struct pos_spec s = {"X1", SALE, DAY_NORMAL, "xena@example.com", NULL, NULL, t, 1,
                         NULL, NULL, NULL};
    pos_apply(&s);
    struct loyalty_stats st;
    loyalty_stats_get(strict, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(balance_of("xena@example.com", NULL), 0);
    pos_apply(&s); /* a redelivery does not retry a failed change by itself */
    assert_int_equal(balance_of("xena@example.com", NULL), 0);
    eng = keep;
    loyalty_free(strict);
    sim_config("{\"loyalty\": {\"conflict_rate\": 0.3}}");
    assert_int_equal(loyalty_replay(eng, "award|pos:X1", &done, &open, err, sizeof err), 0);
    assert_int_equal(done, 1);
    assert_int_equal(open, 0);
    assert_int_equal(balance_of("xena@example.com", NULL), 12);
    assert_int_equal(loyalty_replay(eng, "award|pos:X1", &done, &open, err, sizeof err), 0);
    assert_int_equal(balance_of("xena@example.com", NULL), 12);
    assert_int_equal(loyalty_replay(eng, "award|pos:nope", &done, &open, err, sizeof err), -ENOENT);
}

/* ---- shutdown in the middle of collision retries */

static volatile sig_atomic_t stop_running = 1;

static void *stop_later(void *opaque)
{
    (void)opaque;
    usleep(300 * 1000);
    stop_running = 0;
    return NULL;
}

static void test_shutdown_mid_retries(void **state)
{
    char err[256] = "";
    size_t len;
    char id[37];
    (void)state;
    free(sim_add_member("yara@example.com", NULL));
    const struct tline t[] = {{1, 1500, NULL, 0}};
    struct pos_spec s = {"Y1", SALE, DAY_NORMAL, "yara@example.com", NULL, NULL, t, 1,
                         NULL, NULL, NULL};
    uint8_t *buf = pos_pack(&s, &len, id);
    struct loyalty *stoppable;
    char e2[256];
    struct loyalty_opts lo = {
        .svc = &svc,
        .rules = &rules,
        .api = api,
        .platform = MEMBER_PLATFORM_LOYALTY_APP,
        .shop = SHOP,
        .default_cc = "44",
        .max_retries = 30,
        .backoff_base_ms = 200,
        .backoff_max_ms = 2000,
        .lock_ttl_ms = 10000,
        .lock_wait_ms = 10000,
        .running = &stop_running,
    };
    stoppable = loyalty_new(&lo, e2, sizeof e2);
    assert_non_null(stoppable);

    /* already stopping: nothing is written, the record is left for redelivery */
    stop_running = 0;
    assert_int_equal(loyalty_handle(stoppable, "pos.transactions.v1", buf, len, err, sizeof err),
                     -ECANCELED);
    assert_int_equal(balance_of("yara@example.com", NULL), 0);

    /* every write collides; the stop comes while backing off: out within ~50 ms, no failure */
    sim_config("{\"loyalty\": {\"conflict_rate\": 1.0}}");
    stop_running = 1;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_later, NULL), 0);
    int64_t t0 = clock_mono_ms();
    int rc = loyalty_handle(stoppable, "pos.transactions.v1", buf, len, err, sizeof err);
    int64_t took = clock_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(rc, -ECANCELED);
    assert_true(took < 300 + 500);
    struct loyalty_stats st;
    loyalty_stats_get(stoppable, &st);
    assert_int_equal(st.failed, 0);
    assert_true(st.collisions >= 1);
    assert_int_equal(balance_of("yara@example.com", NULL), 0);

    /* the restart (redelivery) applies it once, although the member's version moved meanwhile */
    sim_config("{\"loyalty\": {\"conflict_rate\": 0.3}}");
    stop_running = 1;
    assert_int_equal(loyalty_handle(stoppable, "pos.transactions.v1", buf, len, err, sizeof err),
                     0);
    assert_int_equal(balance_of("yara@example.com", NULL), 15);
    assert_int_equal(loyalty_handle(stoppable, "pos.transactions.v1", buf, len, err, sizeof err),
                     0);
    assert_int_equal(balance_of("yara@example.com", NULL), 15);
    loyalty_stats_get(stoppable, &st);
    assert_int_equal(st.failed, 0);
    loyalty_free(stoppable);
    free(buf);
}

/* ---- a run killed between the platform write and the journal (kill -9 mid-write) */

static void sql(const char *fmt, ...)
{
    char q[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGconn *c = PQconnectdb(getenv("DATABASE_URL"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        print_error("%s: %s\n", q, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static struct member member_of(const char *email)
{
    struct member m[2];
    size_t n = 0;
    char err[256];
    assert_int_equal(member_api_find(api, email, NULL, m, 2, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    return m[0];
}

/* The journal left as a kill -9 leaves it after the write of txn went out at version v. */
static void leave_in_flight(const char *txn, const struct member *m, int64_t v, int64_t points)
{
    sql("DELETE FROM loyalty_award WHERE source_key = 'pos:%s'", txn);
    sql("INSERT INTO loyalty_change (idem_key, kind, state, source_key, member_id, points, "
        "balance_after, expected_version, amount_minor, currency, occurred_at_ms, email) VALUES "
        "('award|pos:%s', 'award', 'in_flight', 'pos:%s', '%s', %" PRId64 ", %" PRId64 ", %" PRId64
        ", %" PRId64 ", 'GBP', 0, '%s') ON CONFLICT (idem_key) DO UPDATE SET "
        "state = 'in_flight', published = false, balance_after = EXCLUDED.balance_after, "
        "expected_version = EXCLUDED.expected_version",
        txn, txn, m->id, points, m->points + points, v, points * 100, "zoe@example.com");
}

static void test_interrupted_write(void **state)
{
    char err[256];
    struct loyalty_stats st0, st;
    (void)state;
    free(sim_add_member("zoe@example.com", NULL));
    sim_config("{\"loyalty\": {\"conflict_rate\": 0}}");
    loyalty_stats_get(eng, &st0);
#define ZSALE(id, minor)                                                                           \
    struct pos_spec id = {                                                                         \
        #id,                                                                                       \
        SALE,                                                                                      \
        DAY_NORMAL,                                                                                \
        "zoe@example.com",                                                                         \
        NULL,                                                                                      \
        NULL,                                                                                      \
        (const struct tline[]){{1, minor, NULL, 0}},                                               \
        1,                                                                                         \
        NULL,                                                                                      \
        NULL,                                                                                      \
        NULL                                                                                       \
    }

    /* 1. the write landed, then the run died: the redelivery records it, writes nothing */
    struct member m0 = member_of("zoe@example.com");
    ZSALE(Z1, 1500);
    pos_apply(&Z1);
    assert_int_equal(balance_of("zoe@example.com", NULL), 15);
    leave_in_flight("Z1", &m0, m0.version, 15);
    pos_apply(&Z1);
    assert_int_equal(balance_of("zoe@example.com", NULL), 15);

    /* 2. landed, and another change of ours was applied on top before the redelivery */
    struct member m1 = member_of("zoe@example.com");
    ZSALE(Z2, 1000);
    ZSALE(Z3, 700);
    pos_apply(&Z2);
    pos_apply(&Z3);
    assert_int_equal(balance_of("zoe@example.com", NULL), 32);
    leave_in_flight("Z2", &m1, m1.version, 10);
    pos_apply(&Z2);
    assert_int_equal(balance_of("zoe@example.com", NULL), 32);

    /* 3. not landed, and another change of ours took the version it was written against */
    struct member m2 = member_of("zoe@example.com");
    ZSALE(Z4, 400);
    ZSALE(Z5, 500);
    leave_in_flight("Z4", &m2, m2.version, 4);
    pos_apply(&Z5);
    assert_int_equal(balance_of("zoe@example.com", NULL), 37);
    pos_apply(&Z4);
    assert_int_equal(balance_of("zoe@example.com", NULL), 41);

    /* 4. not landed, a collision moved the version without points (the platform's own writer) */
    sim_config("{\"loyalty\": {\"conflict_rate\": 1.0}}");
    struct member m3 = member_of("zoe@example.com"), after;
    usleep(100 * 1000); /* past the simulator's write window */
    assert_int_equal(
        member_api_add_points(api, m3.id, 1, m3.version, "probe", &after, err, sizeof err),
        -EAGAIN);
    sim_config("{\"loyalty\": {\"conflict_rate\": 0}}");
    assert_int_equal(member_of("zoe@example.com").version, m3.version + 1);
    ZSALE(Z6, 600);
    leave_in_flight("Z6", &m3, m3.version, 6);
    pos_apply(&Z6);
    assert_int_equal(balance_of("zoe@example.com", NULL), 47);

    /* 5. someone else changed the points meanwhile: cannot be told, kept failed for a person */
    struct member m4 = member_of("zoe@example.com");
    ZSALE(Z7, 800);
    leave_in_flight("Z7", &m4, m4.version, 8);
    usleep(100 * 1000);
    assert_int_equal(
        member_api_add_points(api, m4.id, 3, m4.version, "staff", &after, err, sizeof err), 0);
    pos_apply(&Z7);
    assert_int_equal(balance_of("zoe@example.com", NULL), 50);
    loyalty_stats_get(eng, &st);
    assert_int_equal(st.failed - st0.failed, 1);
    assert_int_equal(st.applied - st0.applied, 8); /* Z1-Z6 once each, Z1 and Z2 recorded again */
#undef ZSALE
    sim_config("{\"loyalty\": {\"conflict_rate\": 0.3}}");
}

/* ---- 30% conflicts through Kafka, then a replay of both topics from the beginning */

#define LOAD_MEMBERS 8
#define LOAD_SALES   40

struct consume_ctx {
    size_t want, handled;
    volatile sig_atomic_t running;
    char pos_topic[128];
};

static int load_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct consume_ctx *cx = opaque;
    char err[256];
    for (size_t i = 0; i < n; i++) {
        const char *base =
            strcmp(msgs[i].topic, cx->pos_topic) == 0 ? "pos.transactions.v1" : "shop.orders.v1";
        int rc = loyalty_handle(eng, base, msgs[i].payload, msgs[i].len, err, sizeof err);
        if (rc) {
            print_error("handle: %s\n", err);
            return rc;
        }
        if (++cx->handled >= cx->want)
            cx->running = 0;
    }
    return 0;
}

static void consume_all(const char *group, size_t want)
{
    char err[256], orders[128];
    struct consume_ctx cx = {.want = want, .running = 1};
    service_topic(&svc, "pos.transactions.v1", cx.pos_topic, sizeof cx.pos_topic);
    service_topic(&svc, "shop.orders.v1", orders, sizeof orders);
    const char *topics[] = {cx.pos_topic, orders};
    const char *extra[] = {"session.timeout.ms", "6000", "heartbeat.interval.ms", "500", NULL};
    struct kafka_consumer_opts o = {.brokers = svc.kafka_brokers,
                                    .group_id = group,
                                    .topics = topics,
                                    .ntopics = 2,
                                    .max_batch = 50,
                                    .batch_wait_ms = 20,
                                    .commit_offsets = true,
                                    .extra_conf = extra};
    struct kafka_consumer_ops ops = {.on_batch = load_batch};
    struct kafka_consumer *c = kafka_consumer_new(&o, &ops, &cx, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(kafka_consumer_run(c, &cx.running), 0);
    kafka_consumer_free(c);
    assert_int_equal(cx.handled, want);
}

static void publish_raw(const char *base, const char *key, const uint8_t *buf, size_t len,
                        const char *id, const char *type)
{
    char topic[128], err[256];
    service_topic(&svc, base, topic, sizeof topic);
    struct ce_headers ce = {.id = id, .source = "/tillsync/it/test", .type = type};
    assert_int_equal(kafka_producer_send_sync(svc.producer, topic, key, strlen(key), buf, len, &ce,
                                              NULL, 0, 10000, err, sizeof err),
                     0);
}

static void test_conflicts_and_replay(void **state)
{
    int64_t expect[LOAD_MEMBERS] = {0}, last_amount[LOAD_MEMBERS] = {0};
    int64_t last_points[LOAD_MEMBERS] = {0};
    char txn[LOAD_MEMBERS + LOAD_SALES][32], email[LOAD_MEMBERS][64];
    size_t produced = 0;
    (void)state;
    long st = 0;
    json_decref(sim_call("POST", "/_sim/shops/" SHOP "/counters", "{}", &st));
    for (int m = 0; m < LOAD_MEMBERS; m++)
        snprintf(email[m], sizeof email[m], "load%d@example.com", m);
    for (int i = 0; i < LOAD_SALES; i++) {
        int m = i % LOAD_MEMBERS;
        int64_t amount = (i * 737) % 9000 + 100;
        struct tline ln[] = {{1, amount, NULL, 0}};
        snprintf(txn[i], sizeof txn[i], "L%d", i);
        size_t len;
        char id[37];
        if (i % 2 == 0) {
            struct pos_spec s = {txn[i], SALE, DAY_NORMAL, email[m], NULL, NULL,
                                 ln,     1,    NULL,       NULL,     NULL};
            uint8_t *buf = pos_pack(&s, &len, id);
            publish_raw("pos.transactions.v1", "S1/T1", buf, len, id,
                        "tillsync.v1.PosTransactionEvent");
            free(buf);
        } else {
            struct oline ol[] = {{1, amount, NULL}};
            struct order_spec o = {txn[i], O_PAID, "paid", DAY_NORMAL, email[m],
                                   NULL,   ol,     1,      NULL,       NULL};
            uint8_t *buf = order_pack(&o, &len, id);
            char key[64];
            snprintf(key, sizeof key, "shopify/" SHOP "/%s", txn[i]);
            publish_raw("shop.orders.v1", key, buf, len, id, "tillsync.v1.ShopOrderEvent");
            free(buf);
        }
        produced++;
        expect[m] += amount / 100;
        last_amount[m] = amount;
        last_points[m] = amount / 100;
    }
    /* then each member returns 40% of the last purchase (till returns; orders via store) */
    for (int m = 0; m < LOAD_MEMBERS; m++) {
        int i = LOAD_SALES - LOAD_MEMBERS + m;
        int64_t back = last_amount[m] * 4 / 10;
        struct tline ln[] = {{-1, -back, NULL, 0}};
        char rid[32];
        size_t len;
        char id[37];
        snprintf(rid, sizeof rid, "LR%d", m);
        struct pos_spec r = {rid,
                             RETURN,
                             DAY_NORMAL,
                             email[m],
                             NULL,
                             NULL,
                             ln,
                             1,
                             i % 2 == 0 ? txn[i] : NULL,
                             i % 2 == 0 ? NULL : txn[i],
                             NULL};
        uint8_t *buf = pos_pack(&r, &len, id);
        publish_raw("pos.transactions.v1", "S1/T2", buf, len, id,
                    "tillsync.v1.PosTransactionEvent");
        free(buf);
        produced++;
        expect[m] -= last_points[m] * back / last_amount[m];
    }
    char group[96];
    snprintf(group, sizeof group, "ls-it-%s-a", run_id);
    consume_all(group, produced);
    for (int m = 0; m < LOAD_MEMBERS; m++)
        assert_int_equal(balance_of(email[m], NULL), expect[m]);
    json_t *c = sim_call("GET", "/_sim/shops/" SHOP "/counters", NULL, &st);
    json_int_t conflicts = json_integer_value(json_object_get(c, "loyalty.conflicts"));
    json_decref(c);
    print_message("points writes collided %" JSON_INTEGER_FORMAT " times\n", conflicts);
    assert_true(conflicts > 0);

    /* replay both topics from the beginning in a new group: no balance moves */
    struct loyalty_stats before, after;
    loyalty_stats_get(eng, &before);
    snprintf(group, sizeof group, "ls-it-%s-b", run_id);
    consume_all(group, produced);
    loyalty_stats_get(eng, &after);
    assert_int_equal(after.applied, before.applied);
    for (int m = 0; m < LOAD_MEMBERS; m++)
        assert_int_equal(balance_of(email[m], NULL), expect[m]);
    assert_int_equal(balance_of("bob@example.com", NULL), 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_refunds),
        cmocka_unit_test(test_store_return_and_void),
        cmocka_unit_test(test_vat_included),
        cmocka_unit_test(test_cross_channel),
        cmocka_unit_test(test_exchanges),
        cmocka_unit_test(test_multiplier),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_failure_and_replay),
        cmocka_unit_test(test_shutdown_mid_retries),
        cmocka_unit_test(test_interrupted_write),
        cmocka_unit_test(test_conflicts_and_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
