/*
 * ingest — what recon-reporter does with every consumed record: record the event once (dedupe by
 * event id), turn it into reconciliation facts, exceptions, pending stock effects or levels, and
 * store the partition's next offset — all in the caller's one Postgres transaction, so a crash or
 * a redelivery never counts twice nor loses a record (exactly-once in effect).
 *
 * Topics handled (base names, after the tenant prefix): pos.transactions.v1 (transactions:
 * sales, returns, discounts, tax by rate, tenders by type; takings declarations),
 * shop.orders.v1 (orders, cancellations, refunds), stock.movements.v1 (movements by kind),
 * inventory.levels.v1 (levels; marks transactions and orders as reflected in stock),
 * recon.exceptions.v1 (raised / cleared exceptions), catalog.items.v1 (each variant's SKU,
 * tracked and deleted flags: the online side of the SKU check), loyalty.points.v1 (recorded
 * for flow health only), and every "<topic>.dlq" (one DEAD_LETTERED exception per dead-lettered
 * record, from its dlq_* headers). Till sale/return lines with a SKU and stock movement lines
 * are also recorded per SKU, store and location (the till side of the SKU check, checks.h).
 *
 * A record that does not decode, or decodes to something that cannot be stored (text that is
 * not UTF-8, an identifier too long to index, a time past the year 9999, a catalogue item
 * without shop), is dead-lettered to "<topic>.dlq" before any of its effects: one bad record
 * never blocks its partition.
 */
#ifndef RECON_INGEST_H
#define RECON_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <protobuf-c/protobuf-c.h>

#include "kafka.h"

struct ingest {
    const char *prefix; /* TOPIC_PREFIX, may be "" */
    /* Where a record that cannot be decoded is dead-lettered (<topic>.dlq); NULL = record the
     * exception directly instead. Borrowed. */
    struct kafka_producer *producer;
    const char *service; /* "recon-reporter", for dlq_service */
};

/*
 * Apply msgs[0..n) inside one transaction on conn (BEGIN … COMMIT here), together with their
 * offsets in recon_offsets. Records at or below an offset already stored are skipped. Returns 0
 * once committed; negative with err after a rollback (the caller redelivers the batch).
 */
int ingest_batch(PGconn *conn, const struct ingest *in, const struct kafka_message *msgs, size_t n,
                 char *err, size_t errlen);

/*
 * Set each partition's .offset in parts to the stored next offset (leaving
 * RD_KAFKA_OFFSET_INVALID for partitions never seen, so consumption starts at the earliest).
 * Returns 0 or -EIO with err.
 */
int ingest_load_offsets(PGconn *conn, rd_kafka_topic_partition_list_t *parts, char *err,
                        size_t errlen);

/* The topic base names recon-reporter consumes (without ".dlq"), NULL-terminated. */
extern const char *const ingest_topics[];

/*
 * Whether a decoded record can be stored: every string field set in msg (nested and repeated
 * ones included, only the set member of a oneof) is valid UTF-8 as Postgres defines it, and
 * every Envelope's occurred/recorded time is before the year 10000. Returns 0, or -EPROTO with
 * err naming the field.
 */
int ingest_record_check(const ProtobufCMessage *msg, char *err, size_t errlen);

/* "YYYY-MM-DD" (UTC) of a Unix time in ms into out (>= 11 bytes). */
void ingest_date(int64_t ms, char *out, size_t outcap);

#endif
