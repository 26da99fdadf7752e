/*
 * Integration tests of pos-ingest (build/bin/pos-ingest) against the local stack: real HTTP
 * requests, real Kafka (mock cluster) and Postgres. Every request kind must produce exactly the
 * right event (consumed, decoded and compared field by field), duplicates and re-uploaded
 * batches must publish once, ≥30 kinds of malformed or hostile requests must be refused with the
 * right status and a clear message and produce nothing, and with Kafka unreachable the till gets
 * 503 and its retry succeeds exactly once. Every response is checked against openapi.yaml with
 * tools/contracts/validate-response.
 *
 * Isolation: own database (pi_<pid>), own topic prefix (pi<pid>.), own tenant.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

#define KEY_S001 "key-store-s001"
#define KEY_WMS  "key-wms-any-store"

static const char *brokers, *src_dir, *build_dir;
static char prefix[64], dburl[512], workdir[256], mapfile[300];
static char addr[64]; /* pos-ingest under test */
static pid_t svc_pid;
static int validations;

/* ---- process and HTTP helpers -------------------------------------------------------------- */

static pid_t svc_spawn(const char *kafka, const char *timeout_ms, const char *log, char *out_addr,
                       size_t cap)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);

        (void)f;
        dup2(1, 2);
        setenv("TENANT_ID", "acme", 1);
        setenv("TOPIC_PREFIX", prefix, 1);
        setenv("HTTP_LISTEN", "127.0.0.1:0", 1);
        setenv("KAFKA_BROKERS", kafka, 1);
        setenv("DATABASE_URL", dburl, 1);
        setenv("POS_MAPPING_FILE", mapfile, 1);
        setenv("POS_KAFKA_TIMEOUT_MS", timeout_ms, 1);
        setenv("POS_API_KEY_REFRESH_MS", "200", 1);
        setenv("HTTP_THREADS", "16", 1);
        execl(getenv("POS_INGEST_BIN"), "pos-ingest", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        char line[4096];
        FILE *f = fopen(log, "r");

        while (f && fgets(line, sizeof(line), f)) {
            char *a = strstr(line, "\"msg\":\"listening\"");
            char *p = a ? strstr(a, "\"address\":\"") : NULL;

            if (p) {
                p += 11;
                snprintf(out_addr, cap, "%.*s", (int)strcspn(p, "\""), p);
                fclose(f);
                return pid;
            }
        }
        if (f)
            fclose(f);
        usleep(50000);
    }
    fail_msg("pos-ingest did not start; see %s", log);
    return -1;
}

static void svc_term(pid_t pid)
{
    int st = 0;

    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

struct buf {
    char *p;
    size_t n;
};

static size_t buf_write(char *d, size_t sz, size_t nm, void *u)
{
    struct buf *b = u;
    size_t n = sz * nm;

    b->p = realloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* One request; returns the status, *out the body (caller frees). ctype NULL = no header. */
static long http_at(const char *where, const char *method, const char *path, const char *key,
                    const char *ctype, const char *body, size_t len, char **out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct buf b = {calloc(1, 1), 0};
    char url[1024], hdr[600];
    long status = 0;

    snprintf(url, sizeof(url), "http://%s%s", where, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (key) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, hdr);
    }
    if (ctype) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    } else {
        h = curl_slist_append(h, "Content-Type:");
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    *out = b.p;
    return status;
}

/* The response must match openapi.yaml. */
static void validate(const char *method, const char *path, long status, const char *body)
{
    char file[400], cmd[1500];
    FILE *f;
    int rc;

    snprintf(file, sizeof(file), "%s/resp-%d.json", workdir, validations++);
    f = fopen(file, "w");
    fputs(body, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "%s/tools/contracts/validate-response %s/services/pos-ingest/openapi.yaml %s '%s' "
             "%ld %s",
             src_dir, src_dir, method, path, status, file);
    rc = system(cmd);
    if (rc != 0)
        fail_msg("response of %s %s (%ld) does not match openapi.yaml: %s", method, path, status,
                 body);
}

static long post(const char *path, const char *key, const char *body, json_t **out)
{
    char *resp;
    long st = http_at(addr, "POST", path, key, "application/json", body, strlen(body), &resp);

    validate("POST", path, st, resp);
    if (out) {
        *out = json_loads(resp, 0, NULL);
        assert_non_null(*out);
    }
    free(resp);
    return st;
}

/* ---- Kafka helpers -------------------------------------------------------------------------- */

struct rec {
    char key[300];
    char ce_id[64];
    uint8_t *payload;
    size_t len;
};

struct recs {
    struct rec *v;
    size_t n, cap;
};

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].payload);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* Every record of prefix+base from the beginning (all partitions, up to the end). */
static struct recs consume_all(const char *base)
{
    char topic[256], errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts;
    struct recs r = {0};
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int nparts, eofs = 0;
    int64_t deadline = clock_mono_ms() + 90000;

    snprintf(topic, sizeof(topic), "%s%s", prefix, base);
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "pos-ingest-test-reader", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || !md ||
        md->topic_cnt != 1 || md->topics[0].err) {
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return r; /* no such topic yet: nothing was published */
    }
    nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    while (eofs < nparts && clock_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *hdrs = NULL;
        const void *v;
        size_t vl;
        struct rec *x;

        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (r.n == r.cap) { /* doubling: one realloc per record copied the array each time
                             * under ASan, whose realloc never grows in place */
            r.cap = r.cap ? r.cap * 2 : 1024;
            r.v = realloc(r.v, r.cap * sizeof(*r.v));
            assert_non_null(r.v);
        }
        x = &r.v[r.n++];
        memset(x, 0, sizeof(*x));
        snprintf(x->key, sizeof(x->key), "%.*s", (int)m->key_len, (const char *)m->key);
        if (rd_kafka_message_headers(m, &hdrs) == 0 &&
            rd_kafka_header_get_last(hdrs, "ce_id", &v, &vl) == 0)
            snprintf(x->ce_id, sizeof(x->ce_id), "%.*s", (int)vl, (const char *)v);
        x->payload = malloc(m->len + 1);
        memcpy(x->payload, m->payload, m->len);
        x->len = m->len;
        rd_kafka_message_destroy(m);
    }
    if (eofs < nparts)
        fprintf(stderr, "consume_all(%s): deadline after %zu records\n", topic, r.n);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return r;
}

/* The one record with ce_id == id (fails unless exactly one). */
static const struct rec *find_one(const struct recs *r, const char *id)
{
    const struct rec *hit = NULL;
    int n = 0;

    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].ce_id, id) == 0) {
            hit = &r->v[i];
            n++;
        }
    }
    if (n != 1)
        fail_msg("event %s found %d times, want exactly once", id, n);
    return hit;
}

static Tillsync__V1__PosTransactionEvent *pos_event(const char *event_id, const char *want_key)
{
    struct recs r = consume_all("pos.transactions.v1");
    const struct rec *x = find_one(&r, event_id);
    Tillsync__V1__PosTransactionEvent *ev =
        tillsync__v1__pos_transaction_event__unpack(NULL, x->len, x->payload);

    assert_string_equal(x->key, want_key);
    assert_non_null(ev);
    assert_string_equal(ev->envelope->event_id, event_id);
    assert_string_equal(ev->envelope->tenant_id, "acme");
    assert_string_equal(ev->envelope->producer, "pos-ingest");
    assert_true(ev->envelope->recorded_at_ms > 0);
    recs_free(&r);
    return ev;
}

static void produce_raw(const char *base, const char *key, const void *payload, size_t len)
{
    char topic[256], errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    snprintf(topic, sizeof(topic), "%s%s", prefix, base);
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                       RD_KAFKA_V_KEY(key, strlen(key)),
                                       RD_KAFKA_V_VALUE((void *)payload, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

static void pg_run(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *res;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static const char *const SALE =
    "{\"transaction_id\":\"SALE-1\",\"store_code\":\"S001\",\"till_id\":\"T1\",\"kind\":\"sale\","
    "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"business_date\":\"2026-11-24\","
    "\"currency\":\"EUR\",\"cashier_id\":\"C7\","
    "\"lines\":[{\"line_id\":\"L1\",\"sku\":\"SKU-KNOWN\",\"quantity\":2,\"unit_price\":\"5.00\","
    "\"discounts\":[{\"code\":\"D10\",\"description\":\"10%\",\"amount\":\"1.00\"}],"
    "\"tax_lines\":[{\"code\":\"VAT20\",\"name\":\"VAT\",\"rate_ppm\":200000,\"amount\":\"1.50\","
    "\"included_in_price\":true}]},"
    "{\"line_id\":\"L2\",\"non_stock_code\":\"BAG\",\"quantity\":1,\"unit_price\":10}],"
    "\"tenders\":[{\"type\":\"card\",\"amount\":\"5.10\",\"reference\":\"PAY-9\","
    "\"card_brand\":\"visa\"},{\"type\":\"cash\",\"amount\":\"4.00\"}],"
    "\"customer\":{\"loyalty_id\":\"LOY-1\",\"email\":\"a@example.com\",\"phone\":\"+44 1\"},"
    "\"subtotal\":\"9.10\",\"discount_total\":\"1.00\",\"tax_total\":\"1.50\",\"total\":\"9.10\"}";

static int group_setup(void **state)
{
    char log[400];
    const char *base_db = getenv("DATABASE_URL");
    char *slash;

    (void)state;
    brokers = getenv("KAFKA_BROKERS");
    src_dir = getenv("TILLSYNC_SOURCE_DIR");
    build_dir = getenv("TILLSYNC_BUILD_DIR");
    if (!brokers || !base_db || !src_dir || !build_dir) {
        fprintf(stderr, "needs the stack environment (tests/lib/with-stack via ctest)\n");
        return -1;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(prefix, sizeof(prefix), "pi%ld.", (long)getpid());
    snprintf(workdir, sizeof(workdir), "/tmp/pos-ingest-test.%ld", (long)getpid());
    mkdir(workdir, 0700);
    snprintf(mapfile, sizeof(mapfile), "%s/mapping.json", workdir);
    FILE *f = fopen(mapfile, "w");
    fputs("{\"stores\":{\"S001\":{\"location_id\":\"LOC-S001\"},\"S002\":{\"location_id\":"
          "\"LOC-S002\"}},\"locations\":[\"WH-1\"],\"non_stock\":{\"BAG\":{\"ledger_code\":"
          "\"4010-BAGS\",\"needs_no_shipping\":true},\"REPAIR\":{\"ledger_code\":\"4200\","
          "\"needs_no_shipping\":false}}}",
          f);
    fclose(f);
    pg_run(base_db, "SELECT 1");
    {
        char one[200];

        snprintf(one, sizeof(one), "DROP DATABASE IF EXISTS pi_%ld", (long)getpid());
        pg_run(base_db, one);
        snprintf(one, sizeof(one), "CREATE DATABASE pi_%ld", (long)getpid());
        pg_run(base_db, one);
    }
    snprintf(dburl, sizeof(dburl), "%s", base_db);
    slash = strrchr(dburl, '/');
    snprintf(slash + 1, sizeof(dburl) - (size_t)(slash + 1 - dburl), "pi_%ld", (long)getpid());
    {
        char bin[400];

        snprintf(bin, sizeof(bin), "%s/bin/pos-ingest", build_dir);
        setenv("POS_INGEST_BIN", bin, 1);
    }
    /* a catalogue item, published before the service starts (it reads the topic from the start) */
    {
        Tillsync__V1__CatalogItemEvent ev = TILLSYNC__V1__CATALOG_ITEM_EVENT__INIT;
        Tillsync__V1__CatalogItem it = TILLSYNC__V1__CATALOG_ITEM__INIT;
        Tillsync__V1__Money price = TILLSYNC__V1__MONEY__INIT;
        Tillsync__V1__PlatformId var = TILLSYNC__V1__PLATFORM_ID__INIT;
        uint8_t buf[1024];
        size_t n;

        price.minor_units = 500;
        price.currency = "EUR";
        var.id = "44012345678901234567";
        it.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
        it.shop_id = "acme.myshopify.com";
        it.sku = "SKU-KNOWN";
        it.title = "Mug";
        it.variant = &var;
        it.price = &price;
        it.requires_shipping = true;
        it.platform_updated_at_ms = 1764000000000LL;
        it.price_changed_at_ms = 1764000000000LL;
        ev.item = &it;
        n = tillsync__v1__catalog_item_event__pack(&ev, buf);
        produce_raw("catalog.items.v1", "shopify/acme.myshopify.com/44012345678901234567", buf, n);
    }
    snprintf(log, sizeof(log), "%s/pos-ingest.log", workdir);
    svc_pid = svc_spawn(brokers, "5000", log, addr, sizeof(addr));
    /* keys: inserted after start (the migrations made the table): proves reload without restart */
    for (int i = 0; i < 100; i++) {
        PGconn *c = PQconnectdb(dburl);
        PGresult *res = PQexec(c, "INSERT INTO pos_api_keys (key_sha256, store_code, label) VALUES "
                                  "(encode(sha256('" KEY_S001 "'::bytea), 'hex'), 'S001', 's1'), "
                                  "(encode(sha256('" KEY_WMS "'::bytea), 'hex'), NULL, 'wms')");
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

        PQclear(res);
        PQfinish(c);
        if (ok)
            break;
        usleep(100000);
    }
    usleep(300000); /* > POS_API_KEY_REFRESH_MS */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    const char *base_db = getenv("DATABASE_URL");

    if (svc_pid > 0)
        svc_term(svc_pid);
    curl_global_cleanup();
    snprintf(cmd, sizeof(cmd), "DROP DATABASE IF EXISTS pi_%ld", (long)getpid());
    pg_run(base_db, cmd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", workdir);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_sale_event_fields(void **state)
{
    json_t *r;
    Tillsync__V1__PosTransactionEvent *ev;
    Tillsync__V1__PosTransaction *t;

    (void)state;
    /* wait until the catalogue knows SKU-KNOWN (the consumer joins its group first) */
    for (int i = 0; i < 200; i++) {
        char *body;
        long st = http_at(addr, "GET", "/v1/catalog/items", KEY_S001, NULL, NULL, 0, &body);
        bool has = st == 200 && strstr(body, "SKU-KNOWN");

        if (has || i == 199) {
            validate("GET", "/v1/catalog/items", st, body);
            assert_true(has);
        }
        free(body);
        if (has)
            break;
        usleep(100000);
    }
    assert_int_equal(post("/v1/transactions", KEY_S001, SALE, &r), 202);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "accepted");
    ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T1");
    assert_int_equal(ev->body_case, TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION);
    t = ev->transaction;
    assert_string_equal(t->transaction_id, "SALE-1");
    assert_string_equal(t->store_code, "S001");
    assert_string_equal(t->till_id, "T1");
    assert_string_equal(t->location_id, "LOC-S001");
    assert_int_equal(t->kind, TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE);
    assert_string_equal(t->currency, "EUR");
    assert_string_equal(t->business_date, "2026-11-24");
    assert_string_equal(t->cashier_id, "C7");
    assert_int_equal(ev->envelope->occurred_at_ms, 1795514400000LL);
    assert_int_equal(ev->envelope->source, TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS);
    assert_string_equal(ev->envelope->refs->pos_transaction_id, "SALE-1");
    assert_int_equal(t->n_lines, 2);
    assert_string_equal(t->lines[0]->line_id, "L1");
    assert_string_equal(t->lines[0]->sku, "SKU-KNOWN");
    assert_true(t->lines[0]->sku_known);
    assert_true(t->lines[0]->requires_shipping);
    assert_int_equal(t->lines[0]->quantity, 2);
    assert_int_equal(t->lines[0]->unit_price->minor_units, 500);
    assert_int_equal(t->lines[0]->net_amount->minor_units, 900);
    assert_int_equal(t->lines[0]->n_discounts, 1);
    assert_string_equal(t->lines[0]->discounts[0]->code, "D10");
    assert_int_equal(t->lines[0]->discounts[0]->amount->minor_units, 100);
    assert_int_equal(t->lines[0]->n_tax_lines, 1);
    assert_int_equal(t->lines[0]->tax_lines[0]->rate_ppm, 200000);
    assert_int_equal(t->lines[0]->tax_lines[0]->amount->minor_units, 150);
    assert_true(t->lines[0]->tax_lines[0]->included_in_price);
    assert_false(t->lines[0]->restock);
    assert_string_equal(t->lines[1]->non_stock_code, "BAG");
    assert_string_equal(t->lines[1]->ledger_code, "4010-BAGS");
    assert_false(t->lines[1]->requires_shipping);
    assert_int_equal(t->lines[1]->net_amount->minor_units, 10);
    assert_int_equal(t->n_tenders, 2);
    assert_int_equal(t->tenders[0]->type, TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CARD);
    assert_int_equal(t->tenders[0]->amount->minor_units, 510);
    assert_string_equal(t->tenders[0]->reference, "PAY-9");
    assert_string_equal(t->tenders[0]->card_brand, "visa");
    assert_int_equal(t->tenders[1]->type, TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CASH);
    assert_string_equal(t->customer->loyalty_id, "LOY-1");
    assert_string_equal(t->customer->email, "a@example.com");
    assert_int_equal(t->subtotal->minor_units, 910);
    assert_int_equal(t->discount_total->minor_units, 100);
    assert_int_equal(t->tax_total->minor_units, 150);
    assert_int_equal(t->total->minor_units, 910);
    assert_false(t->uploaded_late);
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);

    /* the retry is acknowledged as a duplicate and not published again (pos_event: once) */
    {
        json_t *r2;

        assert_int_equal(post("/v1/transactions", KEY_S001, SALE, &r2), 202);
        assert_string_equal(json_string_value(json_object_get(r2, "status")), "duplicate");
        assert_string_equal(json_string_value(json_object_get(r2, "event_id")),
                            json_string_value(json_object_get(r, "event_id")));
        ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T1");
        tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
        json_decref(r2);
    }
    json_decref(r);
}

static void test_return_exchange_void_takings(void **state)
{
    json_t *r;
    Tillsync__V1__PosTransactionEvent *ev;

    (void)state;
    assert_int_equal(
        post("/v1/transactions", KEY_S001,
             "{\"transaction_id\":\"RET-1\",\"store_code\":\"S001\",\"till_id\":\"T1\","
             "\"kind\":\"return\",\"occurred_at\":\"2026-11-24T11:00:00Z\",\"currency\":\"EUR\","
             "\"original_transaction_id\":\"SALE-1\",\"lines\":[{\"sku\":\"SKU-NEW\","
             "\"quantity\":-1,\"unit_price\":\"4.50\",\"original_line_id\":\"L1\","
             "\"reason\":\"faulty\"}],\"tenders\":[{\"type\":\"card\",\"amount\":\"-4.50\"}],"
             "\"total\":\"-4.50\"}",
             &r),
        202);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "unknown_skus"), 0)),
                        "SKU-NEW");
    ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T1");
    assert_int_equal(ev->transaction->kind,
                     TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN);
    assert_string_equal(ev->transaction->original_transaction_id, "SALE-1");
    assert_int_equal(ev->transaction->lines[0]->quantity, -1);
    assert_true(ev->transaction->lines[0]->restock);
    assert_false(ev->transaction->lines[0]->sku_known);
    assert_string_equal(ev->transaction->lines[0]->original_line_id, "L1");
    assert_int_equal(ev->transaction->total->minor_units, -450);
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    json_decref(r);
    /* the unknown SKU was raised as an exception (owner ecommerce), under the dedupe key that
     * recon-reporter groups its sightings by */
    {
        struct recs x = consume_all("recon.exceptions.v1");
        bool found = false;

        for (size_t i = 0; i < x.n && !found; i++) {
            Tillsync__V1__ExceptionEvent *e =
                tillsync__v1__exception_event__unpack(NULL, x.v[i].len, x.v[i].payload);

            found =
                e && e->exception &&
                e->exception->type == TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN &&
                strstr(e->exception->summary, "SKU-NEW") &&
                strcmp(e->exception->dedupe_key, "sku_unknown/acme/SKU-NEW") == 0;
            tillsync__v1__exception_event__free_unpacked(e, NULL);
        }
        recs_free(&x);
        assert_true(found);
    }

    assert_int_equal(
        post("/v1/transactions", KEY_S001,
             "{\"transaction_id\":\"EXC-1\",\"store_code\":\"S001\",\"till_id\":\"T2\","
             "\"kind\":\"exchange\",\"occurred_at\":\"2026-11-24T12:00:00Z\",\"currency\":\"EUR\","
             "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":-1,\"unit_price\":\"5.00\","
             "\"restock\":false},{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"7.00\"},"
             "{\"non_stock_code\":\"REPAIR\",\"quantity\":1,\"unit_price\":\"1.00\"}],"
             "\"tenders\":[{\"type\":\"gift_card\",\"amount\":\"3.00\",\"reference\":\"GC-1\"}],"
             "\"total\":\"3.00\"}",
             &r),
        202);
    ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T2");
    assert_int_equal(ev->transaction->kind,
                     TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_EXCHANGE);
    assert_int_equal(ev->transaction->n_lines, 3);
    assert_false(ev->transaction->lines[0]->restock);
    assert_int_equal(ev->transaction->lines[0]->net_amount->minor_units, -500);
    assert_string_equal(ev->transaction->lines[2]->ledger_code, "4200");
    assert_true(ev->transaction->lines[2]->requires_shipping);
    assert_int_equal(ev->transaction->tenders[0]->type,
                     TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_GIFT_CARD);
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    json_decref(r);

    assert_int_equal(post("/v1/transactions", KEY_S001,
                          "{\"transaction_id\":\"VOID-1\",\"store_code\":\"S001\",\"till_id\":"
                          "\"T1\",\"kind\":\"void\",\"occurred_at\":\"2026-11-24T12:30:00Z\","
                          "\"currency\":\"EUR\",\"voided_transaction_id\":\"SALE-1\"}",
                          &r),
                     202);
    ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T1");
    assert_int_equal(ev->transaction->kind, TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID);
    assert_string_equal(ev->transaction->voided_transaction_id, "SALE-1");
    assert_int_equal(ev->transaction->n_lines, 0);
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    json_decref(r);

    assert_int_equal(post("/v1/takings", KEY_S001,
                          "{\"store_code\":\"S001\",\"till_id\":\"T1\",\"business_date\":"
                          "\"2026-11-24\",\"currency\":\"EUR\",\"cash_counted\":\"104.00\","
                          "\"card_total\":\"5.10\",\"other_total\":0,\"declared_by\":\"C7\","
                          "\"declared_at\":\"2026-11-24T20:00:00Z\"}",
                          &r),
                     202);
    ev = pos_event(json_string_value(json_object_get(r, "event_id")), "S001/T1");
    assert_int_equal(ev->body_case, TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS);
    assert_string_equal(ev->takings->store_code, "S001");
    assert_string_equal(ev->takings->till_id, "T1");
    assert_string_equal(ev->takings->business_date, "2026-11-24");
    assert_int_equal(ev->takings->cash_counted->minor_units, 10400);
    assert_int_equal(ev->takings->card_total->minor_units, 510);
    assert_int_equal(ev->takings->other_total->minor_units, 0);
    assert_string_equal(ev->takings->declared_by, "C7");
    assert_int_equal(ev->envelope->occurred_at_ms, 1795550400000LL);
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    json_decref(r);
}

static Tillsync__V1__StockMovementEvent *movement_event(const char *id, const char *key)
{
    struct recs r = consume_all("stock.movements.v1");
    const struct rec *x = find_one(&r, id);
    Tillsync__V1__StockMovementEvent *ev =
        tillsync__v1__stock_movement_event__unpack(NULL, x->len, x->payload);

    assert_non_null(ev);
    assert_string_equal(x->key, key);
    assert_string_equal(ev->envelope->event_id, id);
    recs_free(&r);
    return ev;
}

static void test_movements(void **state)
{
    json_t *r;
    Tillsync__V1__StockMovementEvent *ev;

    (void)state;
    assert_int_equal(post("/v1/movements", KEY_WMS,
                          "{\"movement_id\":\"ASN-1\",\"kind\":\"received\",\"location_id\":"
                          "\"WH-1\",\"occurred_at\":\"2026-11-24T08:00:00Z\",\"source\":\"wms\","
                          "\"source_name\":\"wms-main\",\"source_reference\":\"PO-77\","
                          "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":24}]}",
                          &r),
                     202);
    ev = movement_event(json_string_value(json_object_get(r, "event_id")), "WH-1");
    assert_int_equal(ev->movement->kind, TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_RECEIVED);
    assert_string_equal(ev->movement->movement_id, "ASN-1");
    assert_string_equal(ev->movement->location_id, "WH-1");
    assert_string_equal(ev->movement->source_reference, "PO-77");
    assert_int_equal(ev->envelope->source, TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_WMS);
    assert_string_equal(ev->envelope->source_name, "wms-main");
    assert_int_equal(ev->movement->lines[0]->quantity, 24);
    assert_true(ev->movement->lines[0]->sku_known);
    tillsync__v1__stock_movement_event__free_unpacked(ev, NULL);
    json_decref(r);

    assert_int_equal(post("/v1/movements", KEY_S001,
                          "{\"movement_id\":\"TR-1\",\"kind\":\"transfer_out\",\"store_code\":"
                          "\"S001\",\"counterpart_location_id\":\"WH-1\",\"transfer_id\":\"X1\","
                          "\"occurred_at\":\"2026-11-24T09:00:00Z\",\"lines\":[{\"sku\":"
                          "\"SKU-KNOWN\",\"quantity\":3,\"reason_code\":\"rebalance\"}]}",
                          &r),
                     202);
    ev = movement_event(json_string_value(json_object_get(r, "event_id")), "LOC-S001");
    assert_int_equal(ev->movement->kind, TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT);
    assert_string_equal(ev->movement->store_code, "S001");
    assert_string_equal(ev->movement->location_id, "LOC-S001");
    assert_string_equal(ev->movement->counterpart_location_id, "WH-1");
    assert_string_equal(ev->movement->transfer_id, "X1");
    assert_string_equal(ev->movement->lines[0]->reason_code, "rebalance");
    tillsync__v1__stock_movement_event__free_unpacked(ev, NULL);
    json_decref(r);

    assert_int_equal(post("/v1/movements", KEY_S001,
                          "{\"movement_id\":\"SNAP-1\",\"kind\":\"snapshot\",\"store_code\":"
                          "\"S001\",\"occurred_at\":\"2026-11-24T07:00:00Z\",\"lines\":["
                          "{\"sku\":\"SKU-KNOWN\",\"counted_quantity\":17},{\"sku\":\"SKU-Z\","
                          "\"counted_quantity\":0}]}",
                          &r),
                     202);
    ev = movement_event(json_string_value(json_object_get(r, "event_id")), "LOC-S001");
    assert_int_equal(ev->movement->kind, TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT);
    assert_int_equal(ev->movement->n_lines, 2);
    assert_int_equal(ev->movement->lines[0]->counted_quantity, 17);
    assert_int_equal(ev->movement->lines[1]->counted_quantity, 0);
    assert_false(ev->movement->lines[1]->sku_known);
    tillsync__v1__stock_movement_event__free_unpacked(ev, NULL);
    json_decref(r);

    assert_int_equal(post("/v1/movements", KEY_S001,
                          "{\"movement_id\":\"CC-1\",\"kind\":\"cycle_count\",\"store_code\":"
                          "\"S001\",\"occurred_at\":\"2026-11-24T07:30:00Z\",\"lines\":["
                          "{\"sku\":\"SKU-KNOWN\",\"counted_quantity\":16}]}",
                          &r),
                     202);
    ev = movement_event(json_string_value(json_object_get(r, "event_id")), "LOC-S001");
    assert_int_equal(ev->movement->kind, TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT);
    assert_int_equal(ev->movement->lines[0]->counted_quantity, 16);
    tillsync__v1__stock_movement_event__free_unpacked(ev, NULL);
    json_decref(r);
}

/* A malformed or hostile request and what it must get. */
struct bad {
    const char *what, *path, *key, *ctype, *body;
    long status;
    const char *field; /* expected error.field, NULL = none/any */
    const char *text;  /* substring of error.message */
};

#define TX_HEAD                                                                                    \
    "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"sale\","  \
    "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\","
#define TX_LINE "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"5.00\"}],"
#define TX_TAIL "\"tenders\":[{\"type\":\"cash\",\"amount\":\"5.00\"}],\"total\":\"5.00\"}"
#define MV_HEAD                                                                                    \
    "{\"movement_id\":\"BADM\",\"store_code\":\"S001\",\"occurred_at\":\"2026-11-24T10:00:00Z\","

static const struct bad bads[] = {
    {"no API key", "/v1/transactions", NULL, "application/json", TX_HEAD TX_LINE TX_TAIL, 401, NULL,
     "missing API key"},
    {"wrong API key", "/v1/transactions", "nope", "application/json", TX_HEAD TX_LINE TX_TAIL, 401,
     NULL, "unknown or revoked"},
    {"another store's data", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S002\",\"till_id\":\"T9\",\"kind\":\"sale\","
     "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     403, "store_code", "belongs to store"},
    {"wrong content type", "/v1/transactions", KEY_S001, "text/plain", TX_HEAD TX_LINE TX_TAIL, 415,
     NULL, NULL},
    {"no content type", "/v1/transactions", KEY_S001, NULL, TX_HEAD TX_LINE TX_TAIL, 415, NULL,
     NULL},
    {"not JSON", "/v1/transactions", KEY_S001, "application/json", "{\"transaction_id\": ", 400,
     NULL, "line 1"},
    {"top level array", "/v1/transactions", KEY_S001, "application/json", "[1,2]", 400, NULL,
     "object"},
    {"duplicate JSON key", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"A\",\"transaction_id\":\"B\"}", 400, NULL, "duplicate"},
    {"trailing garbage", "/v1/transactions", KEY_S001, "application/json", "{} x", 400, NULL, NULL},
    {"empty body", "/v1/transactions", KEY_S001, "application/json", "", 400, NULL, NULL},
    {"missing transaction_id", "/v1/transactions", KEY_S001, "application/json",
     "{\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"sale\",\"occurred_at\":"
     "\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "transaction_id", "missing"},
    {"unknown store", "/v1/movements", KEY_WMS, "application/json",
     "{\"movement_id\":\"M\",\"store_code\":\"S999\",\"kind\":\"damage\",\"occurred_at\":"
     "\"2026-11-24T10:00:00Z\",\"lines\":[{\"sku\":\"A\",\"quantity\":1}]}",
     422, "store_code", "unknown store"},
    {"unknown kind", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"gift\","
     "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "kind", "not one of"},
    {"quantity 0", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":0,\"unit_price\":\"5.00\"}]," TX_TAIL,
     422, "lines[0].quantity", "must not be 0"},
    {"quantity as float", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD
     "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1.5,\"unit_price\":\"5.00\"}]," TX_TAIL,
     422, "lines[0].quantity", NULL},
    {"negative quantity in a sale", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":-1,\"unit_price\":\"5.00\"}],"
             "\"tenders\":[{\"type\":\"cash\",\"amount\":\"-5.00\"}],\"total\":\"-5.00\"}",
     422, "lines[0].quantity", "positive"},
    {"total does not add up", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD TX_LINE "\"tenders\":[{\"type\":\"cash\",\"amount\":\"5.00\"}],\"total\":\"6.00\"}",
     422, "total", "does not add up"},
    {"tenders do not add up", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD TX_LINE "\"tenders\":[{\"type\":\"cash\",\"amount\":\"4.00\"}],\"total\":\"5.00\"}",
     422, "tenders", "does not equal"},
    {"net amount wrong", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"5.00\","
             "\"net_amount\":\"4.00\"}]," TX_TAIL,
     422, "lines[0].net_amount", "does not equal"},
    {"money as float", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":5.001}]," TX_TAIL,
     422, "lines[0].unit_price", NULL},
    {"too many decimals", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"5.001\"}]," TX_TAIL,
     422, "lines[0].unit_price", NULL},
    {"timestamp far in the future", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"sale\","
     "\"occurred_at\":\"2099-01-01T00:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "occurred_at", "in the future"},
    {"timestamp not RFC 3339", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"sale\","
     "\"occurred_at\":\"yesterday\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "occurred_at", "RFC 3339"},
    {"bad currency", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"BAD-1\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"sale\","
     "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"eu\"," TX_LINE TX_TAIL,
     422, "currency", "ISO 4217"},
    {"sku and non_stock_code", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":[{\"sku\":\"A\",\"non_stock_code\":\"BAG\",\"quantity\":1,"
             "\"unit_price\":\"5.00\"}]," TX_TAIL,
     422, "lines[0].sku", "exactly one"},
    {"no lines", "/v1/transactions", KEY_S001, "application/json", TX_HEAD "\"lines\":[]," TX_TAIL,
     422, "lines", "at least"},
    {"unknown field", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"quantiy\":1," TX_LINE TX_TAIL, 422, "quantiy", "unknown field"},
    {"control character in id", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"A\\u0007B\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":"
     "\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "transaction_id", "control"},
    {"NUL escape", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"A\\u0000B\"}", 400, NULL, NULL},
    {"slash in till id", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"X\",\"store_code\":\"S001\",\"till_id\":\"T/9\",\"kind\":\"sale\","
     "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL,
     422, "till_id", "'/'"},
    {"void without target", "/v1/transactions", KEY_S001, "application/json",
     "{\"transaction_id\":\"V\",\"store_code\":\"S001\",\"till_id\":\"T9\",\"kind\":\"void\","
     "\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"}",
     422, "voided_transaction_id", "needs"},
    {"bad tender type", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD TX_LINE "\"tenders\":[{\"type\":\"bitcoin\",\"amount\":\"5.00\"}],\"total\":\"5.00\"}",
     422, "tenders[0].type", "not one of"},
    {"bad e-mail", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD TX_LINE "\"customer\":{\"email\":\"nobody\"}," TX_TAIL, 422, "customer.email",
     "e-mail"},
    {"huge quantity", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD
     "\"lines\":[{\"sku\":\"A\",\"quantity\":99999999999999999999,\"unit_price\":1}]," TX_TAIL,
     400, NULL, NULL},
    {"wrong type for lines", "/v1/transactions", KEY_S001, "application/json",
     TX_HEAD "\"lines\":\"all of them\"," TX_TAIL, 422, "lines", "array"},
    {"count with quantity", "/v1/movements", KEY_S001, "application/json",
     MV_HEAD "\"kind\":\"cycle_count\",\"lines\":[{\"sku\":\"A\",\"quantity\":3}]}", 422,
     "lines[0].quantity", "counted_quantity"},
    {"transfer without counterpart", "/v1/movements", KEY_S001, "application/json",
     MV_HEAD "\"kind\":\"transfer_in\",\"transfer_id\":\"X\",\"lines\":[{\"sku\":\"A\","
             "\"quantity\":3}]}",
     422, "counterpart_location_id", "transfer needs"},
    {"negative received", "/v1/movements", KEY_S001, "application/json",
     MV_HEAD "\"kind\":\"received\",\"lines\":[{\"sku\":\"A\",\"quantity\":-3}]}", 422,
     "lines[0].quantity", NULL},
    {"unknown location", "/v1/movements", KEY_WMS, "application/json",
     "{\"movement_id\":\"M\",\"location_id\":\"MOON\",\"kind\":\"damage\",\"occurred_at\":"
     "\"2026-11-24T10:00:00Z\",\"lines\":[{\"sku\":\"A\",\"quantity\":1}]}",
     422, "location_id", "unknown location"},
    {"takings negative", "/v1/takings", KEY_S001, "application/json",
     "{\"store_code\":\"S001\",\"till_id\":\"T1\",\"business_date\":\"2026-11-24\",\"currency\":"
     "\"EUR\",\"cash_counted\":\"-1.00\",\"card_total\":\"0\"}",
     422, "cash_counted", "negative"},
    {"takings bad date", "/v1/takings", KEY_S001, "application/json",
     "{\"store_code\":\"S001\",\"till_id\":\"T1\",\"business_date\":\"2026-02-30\",\"currency\":"
     "\"EUR\",\"cash_counted\":\"1.00\",\"card_total\":\"0\"}",
     422, "business_date", "YYYY-MM-DD"},
    {"empty batch", "/v1/batches", KEY_S001, "application/json", "{\"transactions\":[]}", 422,
     "transactions", "at least one"},
    {"batch of a string", "/v1/batches", KEY_S001, "application/json", "{\"transactions\":\"x\"}",
     422, "transactions", "array"},
    {"batch with unknown key", "/v1/batches", KEY_S001, "application/json", "{\"sales\":[]}", 422,
     "sales", "unknown field"},
    /* a batch is validated item by item, but one that is not JSON as a whole publishes nothing,
     * not even its good items before the broken one */
    {"batch with a broken item", "/v1/batches", KEY_S001, "application/json",
     "{\"transactions\":[" TX_HEAD TX_LINE TX_TAIL ",{\"a\":tru}]}", 400, NULL, "invalid JSON"},
    {"batch item with a repeated key", "/v1/batches", KEY_S001, "application/json",
     "{\"transactions\":[" TX_HEAD TX_LINE TX_TAIL ",{\"a\":1,\"a\":2}]}", 400, NULL, "duplicate"},
    {"batch with a repeated array", "/v1/batches", KEY_S001, "application/json",
     "{\"transactions\":[" TX_HEAD TX_LINE TX_TAIL "],\"transactions\":[]}", 400, NULL,
     "duplicate"},
    {"deep nesting", "/v1/transactions", KEY_S001, "application/json", NULL, 400, NULL, NULL},
    {"body too large", "/v1/transactions", KEY_S001, "application/json", NULL, 413, NULL, NULL},
    {"wrong method", "/v1/transactions", KEY_S001, NULL, NULL, 405, NULL, NULL},
};

static void test_bad_requests(void **state)
{
    struct recs before_p = consume_all("pos.transactions.v1");
    struct recs before_m = consume_all("stock.movements.v1");
    size_t np = before_p.n, nm = before_m.n;
    char *deep = malloc(40010), *big = malloc(2 * 1024 * 1024 + 1);

    (void)state;
    recs_free(&before_p);
    recs_free(&before_m);
    memcpy(deep, "{\"a\":", 5);
    for (int i = 0; i < 20000; i++) {
        deep[5 + i] = '[';
        deep[20005 + i] = ']';
    }
    memcpy(deep + 40005, "}", 2);
    memset(big, ' ', 2 * 1024 * 1024);
    big[0] = '{';
    big[2 * 1024 * 1024 - 1] = '}';
    big[2 * 1024 * 1024] = '\0';
    assert_true(sizeof(bads) / sizeof(bads[0]) >= 30);
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        const char *body = b->body;
        const char *method = strcmp(b->what, "wrong method") == 0 ? "PUT" : "POST";
        char *resp;
        json_t *j, *err;
        long st;

        if (strcmp(b->what, "deep nesting") == 0)
            body = deep;
        if (strcmp(b->what, "body too large") == 0)
            body = big;
        st = http_at(addr, method, b->path, b->key, b->ctype, body, body ? strlen(body) : 0, &resp);
        if (st != b->status)
            fail_msg("%s: status %ld, want %ld: %s", b->what, st, b->status, resp);
        if (strcmp(method, "POST") == 0) /* PUT is not an operation of the document */
            validate(method, b->path, st, resp);
        j = json_loads(resp, 0, NULL);
        err = json_object_get(j, "error");
        if (!err || !json_string_value(json_object_get(err, "message")))
            fail_msg("%s: no JSON error message: %s", b->what, resp);
        if (b->field && (!json_string_value(json_object_get(err, "field")) ||
                         strcmp(json_string_value(json_object_get(err, "field")), b->field) != 0))
            fail_msg("%s: field %s, want %s", b->what, resp, b->field);
        if (b->text && !strstr(json_string_value(json_object_get(err, "message")), b->text))
            fail_msg("%s: message lacks \"%s\": %s", b->what, b->text, resp);
        printf("ok: %-32s -> %ld %s\n", b->what, st,
               json_string_value(json_object_get(err, "message")));
        json_decref(j);
        free(resp);
    }
    free(deep);
    free(big);
    /* more good items than go to the pipeline in one job, then one that is not JSON: for each
     * way jansson refuses an item (the service hands the first items to Kafka while it still
     * validates the last, so the split must have refused the body up front) */
    {
        static const char *const broken[] = {
            "{\"transaction_id\":\"BRK-X\",}",
            "{\"a\":99999999999999999999}",
            "{\"a\":-1e999}",
            "{\"a\":1,\"b\":{\"c\":1,\"c\":2}}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\u0000\"}",
            "{\"a\":\"\xed\xa0\x80\"}",
        };
        size_t cap = 1200 * 400, off = 0;
        char *body = malloc(cap), *resp;
        long st;

        off += (size_t)snprintf(body, cap, "{\"transactions\":[");
        for (int i = 0; i < 1200; i++)
            off += (size_t)snprintf(
                body + off, cap - off,
                "{\"transaction_id\":\"BRK-%d\",\"store_code\":\"S001\",\"till_id\":\"T9\","
                "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":"
                "\"EUR\"," TX_LINE TX_TAIL ",",
                i);
        for (size_t k = 0; k < sizeof(broken) / sizeof(broken[0]); k++) {
            snprintf(body + off, cap - off, "%s]}", broken[k]);
            st = http_at(addr, "POST", "/v1/batches", KEY_S001, "application/json", body,
                         strlen(body), &resp);
            if (st != 400 || !strstr(resp, "invalid JSON"))
                fail_msg("1,200 good items and then %s: %ld %s", broken[k], st, resp);
            printf("ok: 1,200 good, then %-24s -> %ld %s\n", broken[k], st, resp);
            free(resp);
        }
        free(body);
    }
    /* none of them produced an event */
    before_p = consume_all("pos.transactions.v1");
    before_m = consume_all("stock.movements.v1");
    assert_int_equal(before_p.n, np);
    assert_int_equal(before_m.n, nm);
    recs_free(&before_p);
    recs_free(&before_m);
}

/* pos_ingest_items_total{type, status} as /metrics shows it now (0 before the first). */
/* The value of one series ("name{labels} " or "name ") in /metrics, 0 when absent. Looked
 * for at the start of a line, not in the # HELP line that also names it. */
static long metric_value(const char *series)
{
    char *body, want[200];
    const char *at;
    long v = 0;

    assert_int_equal(http_at(addr, "GET", "/metrics", NULL, NULL, NULL, 0, &body), 200);
    snprintf(want, sizeof(want), "\n%s", series);
    at = strstr(body, want);
    if (at)
        v = strtol(at + strlen(want), NULL, 10);
    free(body);
    return v;
}

static long items_metric(const char *type, const char *status)
{
    char want[160];

    snprintf(want, sizeof(want), "pos_ingest_items_total{type=\"%s\",status=\"%s\"} ", type,
             status);
    return metric_value(want);
}

/* A conflicting re-use of an id and a batch where bad items do not sink good ones. */
static void test_batch_mixed_and_conflict(void **state)
{
    static const char *const counted[][2] = {{"transaction", "duplicate"},
                                             {"transaction", "rejected"},
                                             {"transaction", "accepted"},
                                             {"movement", "accepted"}};
    long before[4];
    json_t *r, *res;
    char body[4096];

    (void)state;
    for (int i = 0; i < 4; i++)
        before[i] = items_metric(counted[i][0], counted[i][1]);
    /* SALE-1 again with another total: 409 */
    {
        char *other = strdup(SALE), *p = strstr(other, "\"cashier_id\":\"C7\"");

        p[14] = '8';
        assert_int_equal(post("/v1/transactions", KEY_S001, other, &r), 409);
        json_decref(r);
        free(other);
    }
    /* movements first in the body: the answer still lists the transactions first */
    snprintf(
        body, sizeof(body),
        "{\"movements\":[" MV_HEAD "\"kind\":\"damage\",\"lines\":[{\"sku\":"
        "\"SKU-KNOWN\",\"quantity\":1}]}],\"transactions\":[%s," TX_HEAD "\"lines\":[]," TX_TAIL ","
        "{\"transaction_id\":\"B-OK\",\"store_code\":\"S001\",\"till_id\":\"T3\","
        "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE
            TX_TAIL "]}",
        SALE);
    assert_int_equal(post("/v1/batches", KEY_S001, body, &r), 200);
    res = json_object_get(r, "results");
    assert_int_equal(json_array_size(res), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "status")),
                        "duplicate");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "status")),
                        "rejected");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(res, 1), "error"), "field")),
                        "transactions[1].lines");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 2), "status")),
                        "accepted");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 3), "status")),
                        "accepted");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 2), "id")), "B-OK");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 2), "index")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 3), "type")),
                        "movement");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 3), "id")), "BADM");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 3), "index")), 0);
    for (int i = 0; i < 4; i++) /* one of each (the 409 above counts as a conflict) */
        assert_int_equal(items_metric(counted[i][0], counted[i][1]) - before[i], 1);
    {
        Tillsync__V1__PosTransactionEvent *ev = pos_event(
            json_string_value(json_object_get(json_array_get(res, 2), "event_id")), "S001/T3");

        assert_true(ev->transaction->uploaded_late);
        tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    }
    json_decref(r);
    /* the answer is written out by hand: ids and messages with quotes, backslashes, control
     * characters and non-ASCII text come back as the same strings */
    assert_int_equal(
        post("/v1/batches", KEY_S001,
             "{\"transactions\":[{\"transaction_id\":\"Q\\\"\\\\\\u0001\\n\u00e9\u20ac/\","
             "\"store_code\":\"\\t\u00e9\"}]}",
             &r),
        200);
    res = json_array_get(json_object_get(r, "results"), 0);
    assert_string_equal(json_string_value(json_object_get(res, "id")), "Q\"\\\001\n\u00e9\u20ac/");
    assert_string_equal(json_string_value(json_object_get(res, "status")), "rejected");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(res, "error"), "message")),
               "transactions[0]"));
    assert_int_equal(json_integer_value(json_object_get(r, "rejected")), 1);
    json_decref(r);
}

static size_t count_key(const struct recs *r, const char *key)
{
    size_t n = 0;

    for (size_t i = 0; i < r->n; i++)
        n += strcmp(r->v[i].key, key) == 0;
    return n;
}

static void test_batch_10000_twice(void **state)
{
    const size_t n = 10000;
    size_t cap = n * 400 + 64, off = 0;
    char *body = malloc(cap);
    json_t *r;
    int64_t t0;

    (void)state;
    off += (size_t)snprintf(body + off, cap - off, "{\"transactions\":[");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(
            body + off, cap - off,
            "%s{\"transaction_id\":\"OFF-%zu\",\"store_code\":\"S002\",\"till_id\":\"T7\","
            "\"kind\":\"sale\",\"occurred_at\":\"2026-11-23T10:00:00Z\",\"currency\":\"EUR\","
            "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"5.00\"}],"
            "\"tenders\":[{\"type\":\"cash\",\"amount\":\"5.00\"}],\"total\":\"5.00\"}",
            i ? "," : "", i);
    snprintf(body + off, cap - off, "]}");
    for (int round = 0; round < 2; round++) {
        t0 = clock_mono_ms();
        assert_int_equal(post("/v1/batches", KEY_WMS, body, &r), 200);
        printf("batch of %zu, round %d: %lld ms\n", n, round + 1,
               (long long)(clock_mono_ms() - t0));
        assert_int_equal(json_integer_value(json_object_get(r, round ? "duplicate" : "accepted")),
                         (json_int_t)n);
        assert_int_equal(json_array_size(json_object_get(r, "results")), n);
        json_decref(r);
    }
    free(body);
    /* the second round's items took the first round's memory; the last round's is kept
     * (released just after its answer, so wait for it) */
    for (int i = 0; i < 50 && metric_value("pos_ingest_item_cache_bytes ") == 0; i++)
        usleep(100000);
    assert_true(metric_value("pos_ingest_item_cache_bytes ") > 0);
    {
        struct recs all = consume_all("pos.transactions.v1");

        size_t got = count_key(&all, "S002/T7");

        recs_free(&all);
        if (got != n)
            fail_msg("%zu events for the 10,000-transaction batch, want %zu", got, n);
    }
}

/*
 * A batch enters the pipeline in chunks of 500 items while the rest is still being validated:
 * repeats and conflicts across chunks, a bad item on a chunk's edge and the order of the
 * results are what they would be in one piece. 1,200 sales of till S002/T9; item 1,100 repeats
 * item 10 (same body: duplicate), item 1,150 reuses item 20's id with another body (conflict),
 * item 499 is not an object (rejected).
 */
static void test_batch_across_chunks(void **state)
{
    const size_t n = 1200;
    size_t cap = n * 400 + 64, off = 0, accepted = 0;
    char *body = malloc(cap);
    json_t *r, *res;

    (void)state;
    off += (size_t)snprintf(body + off, cap - off, "{\"transactions\":[");
    for (size_t i = 0; i < n; i++) {
        size_t id = i == 1100 ? 10 : i == 1150 ? 20 : i;
        const char *price = i == 1150 ? "6.00" : "5.00";

        if (i == 499) {
            off += (size_t)snprintf(body + off, cap - off, ",42");
            continue;
        }
        off += (size_t)snprintf(
            body + off, cap - off,
            "%s{\"transaction_id\":\"CH-%zu\",\"store_code\":\"S002\",\"till_id\":\"T9\","
            "\"kind\":\"sale\",\"occurred_at\":\"2026-11-23T10:00:00Z\",\"currency\":\"EUR\","
            "\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,\"unit_price\":\"%s\"}],"
            "\"tenders\":[{\"type\":\"cash\",\"amount\":\"%s\"}],\"total\":\"%s\"}",
            i ? "," : "", id, price, price, price);
    }
    snprintf(body + off, cap - off, "]}");
    assert_int_equal(post("/v1/batches", KEY_WMS, body, &r), 200);
    free(body);
    res = json_object_get(r, "results");
    assert_int_equal(json_array_size(res), n);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(res, i);
        const char *st = json_string_value(json_object_get(x, "status"));
        const char *want = i == 499    ? "rejected"
                           : i == 1100 ? "duplicate"
                           : i == 1150 ? "conflict"
                                       : "accepted";

        assert_int_equal(json_integer_value(json_object_get(x, "index")), (json_int_t)i);
        if (strcmp(st, want) != 0)
            fail_msg("item %zu: %s, want %s", i, st, want);
        accepted += strcmp(st, "accepted") == 0;
    }
    assert_int_equal(json_integer_value(json_object_get(r, "accepted")), (json_int_t)(n - 3));
    assert_int_equal(json_integer_value(json_object_get(r, "duplicate")), 1);
    assert_int_equal(json_integer_value(json_object_get(r, "conflict")), 1);
    assert_int_equal(json_integer_value(json_object_get(r, "rejected")), 1);
    json_decref(r);
    {
        struct recs all = consume_all("pos.transactions.v1");

        assert_int_equal(count_key(&all, "S002/T9"), accepted);
        recs_free(&all);
    }
}

/*
 * Concurrent single requests: the claims of simultaneous requests go to Postgres together
 * (claims.c), yet each request gets what it would alone. CONC_THREADS tills send CONC_EACH
 * distinct sales each (all accepted, each published once) and, all at one moment, the same
 * sale (one accepted and published once; the others a duplicate or "in progress, retry").
 */
#define CONC_THREADS 24
#define CONC_EACH    10
#define CONC_SALE(id, till)                                                                        \
    "{\"transaction_id\":\"" id "\",\"store_code\":\"S001\",\"till_id\":\"" till "\","             \
    "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T11:00:00Z\",\"currency\":\"EUR\","             \
    "\"cashier_id\":\"%s\",\"lines\":[{\"sku\":\"SKU-KNOWN\",\"quantity\":1,"                      \
    "\"unit_price\":\"5.00\"}],\"tenders\":[{\"type\":\"cash\",\"amount\":\"5.00\"}],"             \
    "\"total\":\"5.00\"}"

struct conc {
    pthread_t t;
    int id;
    pthread_barrier_t *go;
    int accepted, duplicate, in_progress, other; /* of the shared sale */
    int distinct_ok;
};

/* POST body; the answer's status and "status" field. */
static long conc_post(const char *body, char *status, size_t cap)
{
    char *resp;
    long st = http_at(addr, "POST", "/v1/transactions", KEY_S001, "application/json", body,
                      strlen(body), &resp);
    json_t *r = json_loads(resp, 0, NULL);
    const char *f = st >= 400
                        ? json_string_value(json_object_get(json_object_get(r, "error"), "code"))
                        : json_string_value(json_object_get(r, "status"));

    snprintf(status, cap, "%s", f ? f : "");
    json_decref(r);
    free(resp);
    return st;
}

static void *conc_run(void *arg)
{
    struct conc *c = arg;
    char body[1024], status[64];
    long st;

    pthread_barrier_wait(c->go);
    snprintf(body, sizeof(body), CONC_SALE("CC-SAME", "TS"), "C1");
    st = conc_post(body, status, sizeof(status));
    if (st == 202 && strcmp(status, "accepted") == 0)
        c->accepted++;
    else if (st == 202 && strcmp(status, "duplicate") == 0)
        c->duplicate++;
    else if (st == 503 && strcmp(status, "in_progress") == 0)
        c->in_progress++;
    else
        c->other++;
    for (int j = 0; j < CONC_EACH; j++) {
        char id[32], b2[1024];

        snprintf(id, sizeof(id), "CC-%d-%d", c->id, j);
        snprintf(b2, sizeof(b2), CONC_SALE("%s", "TC"), id, "C1");
        st = conc_post(b2, status, sizeof(status));
        c->distinct_ok += st == 202 && strcmp(status, "accepted") == 0;
    }
    return NULL;
}

static void test_concurrent_requests(void **state)
{
    struct conc cs[CONC_THREADS];
    pthread_barrier_t go;
    int accepted = 0, duplicate = 0, in_progress = 0, other = 0, distinct = 0;
    char body[1024], status[64];

    (void)state;
    pthread_barrier_init(&go, NULL, CONC_THREADS);
    for (int i = 0; i < CONC_THREADS; i++) {
        cs[i] = (struct conc){.id = i, .go = &go};
        assert_int_equal(pthread_create(&cs[i].t, NULL, conc_run, &cs[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(cs[i].t, NULL);
        accepted += cs[i].accepted;
        duplicate += cs[i].duplicate;
        in_progress += cs[i].in_progress;
        other += cs[i].other;
        distinct += cs[i].distinct_ok;
    }
    pthread_barrier_destroy(&go);
    printf("same sale from %d tills at once: %d accepted, %d duplicate, %d in progress\n",
           CONC_THREADS, accepted, duplicate, in_progress);
    assert_int_equal(other, 0);
    assert_int_equal(accepted, 1);
    assert_int_equal(distinct, CONC_THREADS * CONC_EACH);
    /* settled: the same sale is a duplicate, another body under its id a conflict */
    snprintf(body, sizeof(body), CONC_SALE("CC-SAME", "TS"), "C1");
    assert_int_equal(conc_post(body, status, sizeof(status)), 202);
    assert_string_equal(status, "duplicate");
    snprintf(body, sizeof(body), CONC_SALE("CC-SAME", "TS"), "C2");
    assert_int_equal(conc_post(body, status, sizeof(status)), 409);
    {
        struct recs all = consume_all("pos.transactions.v1");

        assert_int_equal(count_key(&all, "S001/TS"), 1);
        assert_int_equal(count_key(&all, "S001/TC"), CONC_THREADS * CONC_EACH);
        recs_free(&all);
    }
}

/*
 * SIGTERM while tills are sending: every request gets an answer (202, or 503 once the service
 * closes; never a dropped connection mid-request while it still runs), the process exits 0 (no
 * abort with requests suspended in the pipeline) and each 202 event is in Kafka exactly once.
 */
#define TERM_THREADS 16

struct term_till {
    pthread_t t;
    int id;
    const char *where;
    atomic_int *stop;
    char (*ids)[64]; /* event ids of the 202 answers */
    int accepted, refused, cap;
};

static void *term_run(void *arg)
{
    struct term_till *c = arg;

    for (int j = 0; j < c->cap && !atomic_load(c->stop); j++) {
        char id[32], body[1024], *resp = NULL;
        json_t *r;
        long st;

        snprintf(id, sizeof(id), "TT-%d-%d", c->id, j);
        snprintf(body, sizeof(body), CONC_SALE("%s", "TT"), id, "C1");
        st = http_at(c->where, "POST", "/v1/transactions", KEY_S001, "application/json", body,
                     strlen(body), &resp);
        r = json_loads(resp ? resp : "", 0, NULL);
        if (st == 202)
            snprintf(c->ids[c->accepted++], 64, "%s",
                     json_string_value(json_object_get(r, "event_id")));
        else if (st == 503 || st == 0) /* closing, or closed: the till retries elsewhere */
            c->refused++;
        else
            fail_msg("till %d request %d: status %ld: %s", c->id, j, st, resp ? resp : "");
        json_decref(r);
        free(resp);
        if (st == 0)
            break;
    }
    return NULL;
}

static void test_sigterm_in_flight(void **state)
{
    struct term_till cs[TERM_THREADS];
    atomic_int stop = 0;
    char log[400], where[64];
    size_t accepted = 0;
    pid_t pid;

    (void)state;
    snprintf(log, sizeof(log), "%s/pos-ingest-term.log", workdir);
    pid = svc_spawn(brokers, "5000", log, where, sizeof(where));
    for (int i = 0; i < TERM_THREADS; i++) {
        cs[i] = (struct term_till){
            .id = i, .where = where, .stop = &stop, .cap = 100000, .ids = calloc(100000, 64)};
        assert_int_equal(pthread_create(&cs[i].t, NULL, term_run, &cs[i]), 0);
    }
    usleep(1500000);
    svc_term(pid); /* asserts a clean exit (0) */
    atomic_store(&stop, 1);
    for (int i = 0; i < TERM_THREADS; i++)
        pthread_join(cs[i].t, NULL);
    {
        struct recs all = consume_all("pos.transactions.v1");

        for (int i = 0; i < TERM_THREADS; i++) {
            for (int k = 0; k < cs[i].accepted; k++)
                find_one(&all, cs[i].ids[k]); /* fails unless exactly once */
            accepted += (size_t)cs[i].accepted;
        }
        printf("SIGTERM under load: %zu accepted, each in Kafka once; %zu records of the till\n",
               accepted, count_key(&all, "S001/TT"));
        assert_true(accepted > 0);
        assert_int_equal(count_key(&all, "S001/TT"), accepted);
        recs_free(&all);
    }
    for (int i = 0; i < TERM_THREADS; i++)
        free(cs[i].ids);
}

struct dead_post {
    const char *where, *body;
    long st;
    char *resp;
};

static void *dead_batch(void *p)
{
    struct dead_post *d = p;

    d->st = http_at(d->where, "POST", "/v1/batches", KEY_S001, "application/json", d->body,
                    strlen(d->body), &d->resp);
    return NULL;
}

/* Kafka unreachable: 503 quickly; the same requests retried once Kafka is back succeed and
 * their events appear exactly once. A second instance points at a dead broker; the retry goes
 * to the instance with the live broker (same database: the claims are shared). */
static void test_kafka_down_then_retry(void **state)
{
    char log[400], dead[64], *resp;
    const char *tx = "{\"transaction_id\":\"KD-1\",\"store_code\":\"S001\",\"till_id\":\"T5\","
                     "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\","
                     "\"currency\":\"EUR\"," TX_LINE TX_TAIL;
    const char *batch = "{\"transactions\":[{\"transaction_id\":\"KD-2\",\"store_code\":\"S001\","
                        "\"till_id\":\"T5\",\"kind\":\"sale\",\"occurred_at\":"
                        "\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\"," TX_LINE TX_TAIL "]}";
    int64_t t0;
    pid_t pid;
    long st;
    json_t *r;

    (void)state;
    snprintf(log, sizeof(log), "%s/pos-ingest-dead.log", workdir);
    setenv("POS_BATCH_CONCURRENCY", "1", 1); /* inherited by this instance only */
    pid = svc_spawn("127.0.0.1:1", "1000", log, dead, sizeof(dead));
    unsetenv("POS_BATCH_CONCURRENCY");
    usleep(300000);
    t0 = clock_mono_ms();
    st = http_at(dead, "POST", "/v1/transactions", KEY_S001, "application/json", tx, strlen(tx),
                 &resp);
    printf("kafka down: %ld after %lld ms: %s\n", st, (long long)(clock_mono_ms() - t0), resp);
    assert_int_equal(st, 503);
    assert_true(clock_mono_ms() - t0 < 5000);
    validate("POST", "/v1/transactions", st, resp);
    assert_non_null(strstr(resp, "kafka_unavailable"));
    free(resp);
    st = http_at(dead, "POST", "/v1/batches", KEY_S001, "application/json", batch, strlen(batch),
                 &resp);
    assert_int_equal(st, 503);
    validate("POST", "/v1/batches", st, resp);
    assert_non_null(strstr(resp, "\"retry\""));
    free(resp);
    /* POS_BATCH_CONCURRENCY=1: while one batch waits for Kafka (1 s), another gets 503 busy
     * with Retry-After (whichever of the two reached the service second) */
    {
        struct dead_post a = {dead, batch, 0, NULL}, b = {dead, batch, 0, NULL};
        pthread_t ta, tb;

        assert_int_equal(pthread_create(&ta, NULL, dead_batch, &a), 0);
        usleep(300000);
        assert_int_equal(pthread_create(&tb, NULL, dead_batch, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        printf("two batches at once, limit 1: %ld %s / %ld %s\n", a.st, a.resp, b.st, b.resp);
        assert_int_equal(a.st, 503);
        assert_int_equal(b.st, 503);
        validate("POST", "/v1/batches", a.st, a.resp);
        validate("POST", "/v1/batches", b.st, b.resp);
        assert_int_equal((strstr(a.resp, "\"code\":\"busy\"") != NULL) +
                             (strstr(b.resp, "\"code\":\"busy\"") != NULL),
                         1);
        assert_int_equal(
            (strstr(a.resp, "\"retry\"") != NULL) + (strstr(b.resp, "\"retry\"") != NULL), 1);
        free(a.resp);
        free(b.resp);
    }
    svc_term(pid);
    /* the retries: accepted, then a further retry is a duplicate; one event each */
    assert_int_equal(post("/v1/transactions", KEY_S001, tx, &r), 202);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "accepted");
    json_decref(r);
    assert_int_equal(post("/v1/batches", KEY_S001, batch, &r), 200);
    assert_int_equal(json_integer_value(json_object_get(r, "accepted")), 1);
    json_decref(r);
    assert_int_equal(post("/v1/transactions", KEY_S001, tx, &r), 202);
    assert_string_equal(json_string_value(json_object_get(r, "status")), "duplicate");
    json_decref(r);
    {
        struct recs all = consume_all("pos.transactions.v1");

        size_t got = count_key(&all, "S001/T5");

        recs_free(&all);
        if (got != 2)
            fail_msg("%zu events of till S001/T5, want 2 (KD-1 and KD-2 once each)", got);
    }
}

static void test_key_rotation(void **state)
{
    json_t *r;
    char *resp;
    long st;

    (void)state;
    pg_run(dburl, "INSERT INTO pos_api_keys (key_sha256, store_code) VALUES "
                  "(encode(sha256('rotated-key'::bytea), 'hex'), 'S001')");
    pg_run(dburl, "UPDATE pos_api_keys SET revoked_at = now() WHERE label = 's1'");
    usleep(400000);
    st = http_at(addr, "GET", "/v1/catalog/price-changes?since=2025-01-01T00:00:00Z", KEY_S001,
                 NULL, NULL, 0, &resp);
    assert_int_equal(st, 401);
    free(resp);
    st = http_at(addr, "GET", "/v1/catalog/price-changes?since=2025-01-01T00:00:00Z", "rotated-key",
                 NULL, NULL, 0, &resp);
    assert_int_equal(st, 200);
    validate("GET", "/v1/catalog/price-changes", st, resp);
    r = json_loads(resp, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 1);
    json_decref(r);
    free(resp);
    st = http_at(addr, "GET", "/v1/catalog/price-changes?since=2030-01-01T00:00:00Z", "rotated-key",
                 NULL, NULL, 0, &resp);
    assert_int_equal(st, 200);
    assert_non_null(strstr(resp, "\"count\":0"));
    free(resp);
    st = http_at(addr, "GET", "/v1/catalog/items?since=soon", "rotated-key", NULL, NULL, 0, &resp);
    assert_int_equal(st, 400);
    validate("GET", "/v1/catalog/items", st, resp);
    free(resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sale_event_fields),
        cmocka_unit_test(test_return_exchange_void_takings),
        cmocka_unit_test(test_movements),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_batch_mixed_and_conflict),
        cmocka_unit_test(test_batch_10000_twice),
        cmocka_unit_test(test_batch_across_chunks),
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_sigterm_in_flight),
        cmocka_unit_test(test_kafka_down_then_retry),
        cmocka_unit_test(test_key_rotation),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
