/*
 * shop_levels — produce channel InventoryLevelEvent records (inventory.levels.v1) for the
 * shop-connector push tests and benchmark, through the common producer (the real contract and
 * CloudEvents headers), standing in for inventory-ledger.
 *
 *   shop_levels script             one record per stdin line:
 *                                  PLATFORM SHOP ITEM_ID LOCATION_ID SKU AVAILABLE VERSION
 *   shop_levels burst KEYS N SECONDS SEED BASE_VERSION FINAL
 *                                  N changes spread evenly over SECONDS across the keys of file
 *                                  KEYS (lines PLATFORM SHOP ITEM_ID LOCATION_ID SKU), figures
 *                                  0..40 (one in ten 0), versions BASE_VERSION+1...; as_of_ms =
 *                                  the send time; writes each key's last figure to FINAL as
 *                                  "ITEM_ID LOCATION_ID AVAILABLE". SECONDS 0 = as fast as
 *                                  possible.
 * Topic: $TOPIC_PREFIX + inventory.levels.v1, key "<platform>-<location>/<sku>"; brokers from
 * KAFKA_BROKERS. Exits 0 once every record was acknowledged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "kafka.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "uuid.h"

static struct kafka_producer *prod;
static char topic[256];
static volatile long failed;

static void on_delivery(void *opaque, int error, const char *errstr, int32_t partition,
                        int64_t offset)
{
    (void)opaque;
    (void)errstr;
    (void)partition;
    (void)offset;
    if (error)
        __atomic_add_fetch(&failed, 1, __ATOMIC_SEQ_CST);
}

static int send_level(const char *platform, const char *shop, const char *item, const char *loc,
                      const char *sku, long long avail, long long version)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__PlatformId pid = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__InventoryLevel lv = TILLSYNC__V1__INVENTORY_LEVEL__INIT;
    Tillsync__V1__InventoryLevelEvent ev = TILLSYNC__V1__INVENTORY_LEVEL_EVENT__INIT;
    char id[37], name[512], key[512], locid[256];
    snprintf(name, sizeof(name), "level/%s/%s/%s/%lld", shop, loc, sku, version);
    uuid_from_name(name, id);
    snprintf(locid, sizeof(locid), "%s-%s", platform, loc);
    snprintf(key, sizeof(key), "%s/%s", locid, sku);
    env.event_id = id;
    env.tenant_id = "test";
    int64_t now = clock_now_ms();
    pid.id = (char *)item;
    char gid[300];
    snprintf(gid, sizeof(gid), "gid://shopify/InventoryItem/%s", item);
    pid.gid = strcmp(platform, "shopify") == 0 ? gid : "";
    lv.sku = (char *)sku;
    lv.location_id = locid;
    lv.location_kind = TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_CHANNEL;
    lv.platform = strcmp(platform, "shopify") == 0 ? TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY
                                                   : TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE;
    lv.shop_id = (char *)shop;
    lv.platform_location_id = (char *)loc;
    lv.inventory_item = &pid;
    lv.on_hand = avail;
    lv.available = avail;
    lv.version = version;
    lv.as_of_ms = now;
    ev.envelope = &env;
    ev.level = &lv;
    size_t len = tillsync__v1__inventory_level_event__get_packed_size(&ev);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    tillsync__v1__inventory_level_event__pack(&ev, buf);
    char ts[40], err[256];
    clock_format_rfc3339(now, ts, sizeof(ts));
    struct ce_headers ce = {.id = id,
                            .source = "/tillsync/test/inventory-ledger",
                            .type = "tillsync.v1.InventoryLevelEvent",
                            .time = ts,
                            .subject = key};
    int rc = kafka_producer_send(prod, topic, key, strlen(key), buf, len, &ce, NULL, 0, on_delivery,
                                 NULL, err, sizeof(err));
    free(buf);
    if (rc < 0)
        fprintf(stderr, "shop_levels: %s\n", err);
    return rc;
}

struct key {
    char platform[16], shop[128], item[64], loc[64], sku[64];
    long long last;
};

static int burst(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: shop_levels burst KEYS N SECONDS SEED BASE_VERSION FINAL\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 2;
    }
    struct key *keys = NULL;
    size_t nk = 0, cap = 0;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        if (nk == cap) {
            cap = cap ? cap * 2 : 1024;
            keys = realloc(keys, cap * sizeof(*keys));
            if (!keys)
                return 1;
        }
        struct key *k = &keys[nk];
        if (sscanf(line, "%15s %127s %63s %63s %63s", k->platform, k->shop, k->item, k->loc,
                   k->sku) == 5) {
            k->last = -1;
            nk++;
        }
    }
    fclose(f);
    char *end;
    long n = strtol(argv[3], &end, 10);
    double secs = strtod(argv[4], NULL);
    unsigned seed = (unsigned)strtoul(argv[5], NULL, 10);
    long long base = strtoll(argv[6], NULL, 10);
    if (nk == 0 || n <= 0) {
        fprintf(stderr, "shop_levels: no keys or N <= 0\n");
        return 2;
    }
    srand(seed);
    int64_t t0 = clock_mono_ms();
    for (long i = 0; i < n; i++) {
        struct key *k = &keys[(size_t)rand() % nk];
        long long avail = rand() % 10 == 0 ? 0 : rand() % 41;
        if (send_level(k->platform, k->shop, k->item, k->loc, k->sku, avail, base + i + 1) < 0)
            return 1;
        k->last = avail;
        if (secs > 0) {
            int64_t due = t0 + (int64_t)((double)(i + 1) * secs * 1000.0 / (double)n);
            int64_t d = due - clock_mono_ms();
            if (d > 0) {
                struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
    f = fopen(argv[7], "w");
    if (!f) {
        perror(argv[7]);
        return 2;
    }
    for (size_t i = 0; i < nk; i++)
        if (keys[i].last >= 0)
            fprintf(f, "%s %s %lld\n", keys[i].item, keys[i].loc, keys[i].last);
    fclose(f);
    free(keys);
    return 0;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    char err[512];
    if (argc < 2 || !brokers) {
        fprintf(stderr, "usage: shop_levels script|burst ... (KAFKA_BROKERS required)\n");
        return 2;
    }
    if (kafka_topic_name(getenv("TOPIC_PREFIX"), "inventory.levels.v1", topic, sizeof(topic)) < 0)
        return 2;
    prod = kafka_producer_new(brokers, "shop_levels", NULL, err, sizeof(err));
    if (!prod) {
        fprintf(stderr, "shop_levels: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (strcmp(argv[1], "burst") == 0) {
        rc = burst(argc, argv);
    } else if (strcmp(argv[1], "script") == 0) {
        char line[1024];
        while (rc == 0 && fgets(line, sizeof(line), stdin)) {
            char pl[16], shop[128], item[64], loc[64], sku[64];
            long long avail, ver;
            if (line[0] == '#' || line[0] == '\n')
                continue;
            if (sscanf(line, "%15s %127s %63s %63s %63s %lld %lld", pl, shop, item, loc, sku,
                       &avail, &ver) != 7) {
                fprintf(stderr, "shop_levels: bad line: %s", line);
                rc = 2;
                break;
            }
            if (send_level(pl, shop, item, loc, sku, avail, ver) < 0)
                rc = 1;
        }
    } else {
        fprintf(stderr, "shop_levels: unknown mode %s\n", argv[1]);
        rc = 2;
    }
    if (kafka_producer_flush(prod, 60000) < 0)
        rc = 1;
    kafka_producer_free(prod);
    if (failed) {
        fprintf(stderr, "shop_levels: %ld records failed\n", failed);
        rc = 1;
    }
    return rc;
}
