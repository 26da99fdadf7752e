/*
 * tillsync-kafka-mock — hosts librdkafka's mock cluster (rdkafka_mock.h) as a stand-alone
 * process for the local stack and the integration tests.
 *
 * It creates a 3-broker mock cluster, creates every topic of DESIGN.md (with --prefix), prints
 *   KAFKA_BROKERS=127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
 *   KAFKA_MOCK_CONTROL=127.0.0.1:pc
 * on stdout once ready (and into --ready-file, written atomically), then serves a line-based
 * control port for fault injection until SIGTERM/SIGINT. Commands, one per line; every answer is
 * exactly one line, "ok[ <data>]" or "error <why>":
 *   broker-down <id> | broker-up <id>          take a broker's listener down / up again
 *   request-errors <apikey> <count> <errcode>  next <count> requests of <apikey> fail
 * (cluster-wide) rtt <id> <ms>                              add round-trip latency to a broker
 *   clear                                      drop queued request errors, rtt 0, all brokers up
 *   topics                                     "ok name:partitions name:partitions ..."
 *   create-topic <name> <partitions>           create a topic (replication as the others)
 *   ping                                       "ok"
 *
 * Usage: tillsync-kafka-mock [--prefix P] [--ready-file F] [--pid-file F] [--brokers N]
 * The pid file is written before the ready file, so a supervisor that saw the ready file can
 * always stop the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_CLIENTS  32
#define LINE_MAX_LEN 1024
#define MAX_API_KEY  80 /* higher than any ApiKey librdkafka 2.0.2 knows */

static volatile sig_atomic_t running = 1;

/* One connected control client with its partial input line. */
struct client {
    int fd;
    size_t used;
    char buf[LINE_MAX_LEN];
};

/* The whole program state; mcluster is owned by rk (destroyed before it). */
struct mock {
    rd_kafka_t *rk; /* host handle of the mock cluster */
    rd_kafka_mock_cluster_t *mcluster;
    rd_kafka_t *meta; /* a client of the cluster, for the `topics` command */
    int nbrokers;
    int listen_fd;
    struct client clients[MAX_CLIENTS];
};

/* The topics of DESIGN.md with their partition counts; consumed ones also get a .dlq. */
static const struct {
    const char *name;
    int partitions;
    bool consumed;
} topics[] = {
    {"pos.transactions.v1", 6, true}, {"stock.movements.v1", 6, true},
    {"shop.orders.v1", 6, true},      {"catalog.items.v1", 3, true},
    {"inventory.levels.v1", 6, true}, {"loyalty.points.v1", 6, true},
    {"recon.exceptions.v1", 3, true},
};

static void on_signal(int sig)
{
    (void)sig;
    running = 0;
}

/* Parse a decimal integer in [min, max]; false on anything else. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    if (!s || !*s)
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int replication_for(const struct mock *m)
{
    return m->nbrokers < 3 ? m->nbrokers : 3;
}

static int topic_create(struct mock *m, const char *name, int partitions, char *err, size_t errlen)
{
    rd_kafka_resp_err_t e =
        rd_kafka_mock_topic_create(m->mcluster, name, partitions, replication_for(m));
    if (e) {
        snprintf(err, errlen, "%s: %s", name, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static int topics_create_all(struct mock *m, const char *prefix, char *err, size_t errlen)
{
    char name[512];

    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", prefix, topics[i].name);
        if (topic_create(m, name, topics[i].partitions, err, errlen))
            return -1;
        if (topics[i].consumed) {
            snprintf(name, sizeof(name), "%s%s.dlq", prefix, topics[i].name);
            if (topic_create(m, name, 1, err, errlen))
                return -1;
        }
    }
    return 0;
}

/* Answer `topics`: a metadata request through an ordinary client of the cluster. */
static void cmd_topics(struct mock *m, char *out, size_t outcap)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(m->meta, 1, NULL, &md, 5000);
    size_t off;

    if (e) {
        snprintf(out, outcap, "error metadata: %s", rd_kafka_err2str(e));
        return;
    }
    off = (size_t)snprintf(out, outcap, "ok");
    for (int i = 0; i < md->topic_cnt && off < outcap; i++) {
        int n = snprintf(out + off, outcap - off, " %s:%d", md->topics[i].topic,
                         md->topics[i].partition_cnt);
        if (n < 0 || (size_t)n >= outcap - off) {
            off = outcap;
            break;
        }
        off += (size_t)n;
    }
    rd_kafka_metadata_destroy(md);
}

/* Execute one control line; writes the one-line answer (no newline) into out. */
static void control_exec(struct mock *m, char *line, char *out, size_t outcap)
{
    char *argv[5] = {0};
    int argc = 0;
    long a = 0, b = 0, c = 0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    /* split on blanks in place */
    for (char *s = line; *s && argc < 5;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            *s++ = '\0';
        if (!*s)
            break;
        argv[argc++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r')
            s++;
    }
    if (argc == 0) {
        snprintf(out, outcap, "error empty command");
        return;
    }

    if (!strcmp(argv[0], "ping") && argc == 1) {
        snprintf(out, outcap, "ok");
    } else if ((!strcmp(argv[0], "broker-down") || !strcmp(argv[0], "broker-up")) && argc == 2) {
        if (!parse_long(argv[1], 1, m->nbrokers, &a)) {
            snprintf(out, outcap, "error broker id must be 1..%d", m->nbrokers);
            return;
        }
        e = argv[0][7] == 'd' ? rd_kafka_mock_broker_set_down(m->mcluster, (int32_t)a)
                              : rd_kafka_mock_broker_set_up(m->mcluster, (int32_t)a);
        snprintf(out, outcap, e ? "error %s" : "ok", rd_kafka_err2str(e));
    } else if (!strcmp(argv[0], "request-errors") && argc == 4) {
        rd_kafka_resp_err_t *errs;
        if (!parse_long(argv[1], 0, MAX_API_KEY - 1, &a) || !parse_long(argv[2], 1, 10000, &b) ||
            !parse_long(argv[3], -200, 1000, &c)) {
            snprintf(out, outcap,
                     "error usage: request-errors <apikey 0..%d> <count 1..10000> <errcode>",
                     MAX_API_KEY - 1);
            return;
        }
        errs = calloc((size_t)b, sizeof(*errs));
        if (!errs) {
            snprintf(out, outcap, "error out of memory");
            return;
        }
        for (long i = 0; i < b; i++)
            errs[i] = (rd_kafka_resp_err_t)c;
        rd_kafka_mock_push_request_errors_array(m->mcluster, (int16_t)a, (size_t)b, errs);
        free(errs);
        snprintf(out, outcap, "ok");
    } else if (!strcmp(argv[0], "rtt") && argc == 3) {
        if (!parse_long(argv[1], 1, m->nbrokers, &a) || !parse_long(argv[2], 0, 600000, &b)) {
            snprintf(out, outcap, "error usage: rtt <broker 1..%d> <ms>", m->nbrokers);
            return;
        }
        e = rd_kafka_mock_broker_set_rtt(m->mcluster, (int32_t)a, (int)b);
        snprintf(out, outcap, e ? "error %s" : "ok", rd_kafka_err2str(e));
    } else if (!strcmp(argv[0], "clear") && argc == 1) {
        for (int k = 0; k < MAX_API_KEY; k++)
            rd_kafka_mock_clear_request_errors(m->mcluster, (int16_t)k);
        for (int id = 1; id <= m->nbrokers; id++) {
            rd_kafka_mock_broker_set_rtt(m->mcluster, id, 0);
            rd_kafka_mock_broker_set_up(m->mcluster, id);
        }
        snprintf(out, outcap, "ok");
    } else if (!strcmp(argv[0], "topics") && argc == 1) {
        cmd_topics(m, out, outcap);
    } else if (!strcmp(argv[0], "create-topic") && argc == 3) {
        char why[256];
        if (!parse_long(argv[2], 1, 1000, &a)) {
            snprintf(out, outcap, "error usage: create-topic <name> <partitions 1..1000>");
            return;
        }
        if (topic_create(m, argv[1], (int)a, why, sizeof(why)))
            snprintf(out, outcap, "error %s", why);
        else
            snprintf(out, outcap, "ok");
    } else {
        snprintf(out, outcap,
                 "error unknown command or arguments (broker-down, broker-up, request-errors, "
                 "rtt, clear, topics, create-topic, ping)");
    }
}

static void client_close(struct client *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
    cl->used = 0;
}

/* Write all of buf; false when the client went away. */
static bool write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* Read what the client sent and answer every complete line. */
static void client_read(struct mock *m, struct client *cl)
{
    char answer[8192];
    ssize_t n = recv(cl->fd, cl->buf + cl->used, sizeof(cl->buf) - cl->used, 0);
    char *nl;

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        client_close(cl);
        return;
    }
    cl->used += (size_t)n;
    while ((nl = memchr(cl->buf, '\n', cl->used)) != NULL) {
        size_t linelen = (size_t)(nl - cl->buf);
        *nl = '\0';
        control_exec(m, cl->buf, answer, sizeof(answer) - 1);
        fprintf(stderr, "kafka-mock: control: %s -> %s\n", cl->buf, answer);
        size_t alen = strlen(answer);
        answer[alen++] = '\n';
        if (!write_all(cl->fd, answer, alen)) {
            client_close(cl);
            return;
        }
        memmove(cl->buf, nl + 1, cl->used - linelen - 1);
        cl->used -= linelen + 1;
    }
    if (cl->used == sizeof(cl->buf)) {
        write_all(cl->fd, "error line too long\n", 20);
        client_close(cl);
    }
}

static int control_listen(int *port)
{
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&sa, &salen)) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Write the ready lines to path atomically (tmp + rename). */
static int ready_file_write(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (fputs(text, f) < 0 || fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static void serve(struct mock *m)
{
    struct pollfd pfds[MAX_CLIENTS + 1];
    int idx[MAX_CLIENTS + 1];

    while (running) {
        int n = 0;
        pfds[n].fd = m->listen_fd;
        pfds[n].events = POLLIN;
        idx[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (m->clients[i].fd < 0)
                continue;
            pfds[n].fd = m->clients[i].fd;
            pfds[n].events = POLLIN;
            idx[n++] = i;
        }
        int r = poll(pfds, (nfds_t)n, 200);
        if (r <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pfds[k].revents)
                continue;
            if (idx[k] < 0) {
                int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                int slot = -1;
                if (fd < 0)
                    continue;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (m->clients[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    write_all(fd, "error too many clients\n", 23);
                    close(fd);
                    continue;
                }
                m->clients[slot].fd = fd;
                m->clients[slot].used = 0;
            } else {
                client_read(m, &m->clients[idx[k]]);
            }
        }
    }
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: tillsync-kafka-mock [--prefix P] [--ready-file F] [--pid-file F] [--brokers N]\n");
}

int main(int argc, char **argv)
{
    struct mock m = {.listen_fd = -1, .nbrokers = 3};
    const char *prefix = "";
    const char *ready_file = NULL;
    const char *pid_file = NULL;
    char pidtext[32];
    char errstr[512];
    char ready[2048];
    int control_port = 0;
    int rc = 1;
    rd_kafka_conf_t *conf = NULL;
    struct sigaction sa = {0};
    long v;

    for (int i = 0; i < MAX_CLIENTS; i++)
        m.clients[i].fd = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prefix") && i + 1 < argc) {
            prefix = argv[++i];
        } else if (!strcmp(argv[i], "--ready-file") && i + 1 < argc) {
            ready_file = argv[++i];
        } else if (!strcmp(argv[i], "--pid-file") && i + 1 < argc) {
            pid_file = argv[++i];
        } else if (!strcmp(argv[i], "--brokers") && i + 1 < argc &&
                   parse_long(argv[i + 1], 1, 16, &v)) {
            m.nbrokers = (int)v;
            i++;
        } else {
            usage();
            return 2;
        }
    }

    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "tillsync-kafka-mock", errstr, sizeof(errstr))) {
        fprintf(stderr, "kafka-mock: %s\n", errstr);
        goto out;
    }
    m.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!m.rk) {
        fprintf(stderr, "kafka-mock: rd_kafka_new: %s\n", errstr);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    m.mcluster = rd_kafka_mock_cluster_new(m.rk, m.nbrokers);
    if (!m.mcluster) {
        fprintf(stderr, "kafka-mock: cannot create the mock cluster\n");
        goto out;
    }
    if (topics_create_all(&m, prefix, errstr, sizeof(errstr))) {
        fprintf(stderr, "kafka-mock: create topic %s\n", errstr);
        goto out;
    }

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(m.mcluster),
                          errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "client.id", "tillsync-kafka-mock-meta", errstr, sizeof(errstr))) {
        fprintf(stderr, "kafka-mock: %s\n", errstr);
        goto out;
    }
    m.meta = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!m.meta) {
        fprintf(stderr, "kafka-mock: rd_kafka_new (meta): %s\n", errstr);
        goto out;
    }
    conf = NULL;

    m.listen_fd = control_listen(&control_port);
    if (m.listen_fd < 0) {
        fprintf(stderr, "kafka-mock: control port: %s\n", strerror(errno));
        goto out;
    }

    snprintf(ready, sizeof(ready), "KAFKA_BROKERS=%s\nKAFKA_MOCK_CONTROL=127.0.0.1:%d\n",
             rd_kafka_mock_cluster_bootstraps(m.mcluster), control_port);
    snprintf(pidtext, sizeof(pidtext), "%ld\n", (long)getpid());
    if (pid_file && ready_file_write(pid_file, pidtext)) {
        fprintf(stderr, "kafka-mock: cannot write %s: %s\n", pid_file, strerror(errno));
        goto out;
    }
    if (ready_file && ready_file_write(ready_file, ready)) {
        fprintf(stderr, "kafka-mock: cannot write %s: %s\n", ready_file, strerror(errno));
        goto out;
    }
    fputs(ready, stdout);
    fflush(stdout);
    fprintf(stderr, "kafka-mock: ready, %d brokers, topic prefix '%s'\n", m.nbrokers, prefix);

    serve(&m);
    fprintf(stderr, "kafka-mock: shutting down\n");
    rc = 0;

out:
    for (int i = 0; i < MAX_CLIENTS; i++)
        client_close(&m.clients[i]);
    if (m.listen_fd >= 0)
        close(m.listen_fd);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (m.meta)
        rd_kafka_destroy(m.meta);
    if (m.mcluster)
        rd_kafka_mock_cluster_destroy(m.mcluster);
    if (m.rk)
        rd_kafka_destroy(m.rk);
    return rc;
}
