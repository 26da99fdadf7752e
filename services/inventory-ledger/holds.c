/* holds — checkout and pickup holds in Redis. See holds.h for the model and the argument. */
#include "holds.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "levels.h"
#include "log.h"
#include "pgarr.h"
#include "tillsync/v1/order.pb-c.h"
#include "uuid.h"

/* ---- Lua. ARGV[1] is always the tenant's key prefix; time is Redis' own (TIME). */

#define LUA_PRELUDE                                                                                \
    "local P = ARGV[1]\n"                                                                          \
    "local t = redis.call('TIME')\n"                                                               \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* live(scope, sku): drop expired lines, sum the rest. avail(scope, sku): figure − holds
 * counted against the scope, least over the channels containing a location. Within one call
 * (one instant: `now` is fixed) a key's live sum changes only by the call's own INCRBY (which
 * updates LQ) and its figure not at all, so a batch of holds on one SKU reads them once. */
#define LUA_AVAIL                                                                                  \
    "local LQ, LF = {}, {}\n"                                                                      \
    "local function live(scope, sku)\n"                                                            \
    "  local q = P .. 'q:' .. scope .. ':' .. sku\n"                                               \
    "  if LQ[q] then return LQ[q] end\n"                                                           \
    "  local z = P .. 'z:' .. scope .. ':' .. sku\n"                                               \
    "  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)\n"                                 \
    "  if #gone > 0 then\n"                                                                        \
    "    local d = 0\n"                                                                            \
    "    for _, m in ipairs(gone) do d = d + tonumber(string.match(m, '|(%d+)$')) end\n"           \
    "    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)\n"                                         \
    "    redis.call('DECRBY', q, d)\n"                                                             \
    "  end\n"                                                                                      \
    "  LQ[q] = tonumber(redis.call('GET', q) or '0')\n"                                            \
    "  return LQ[q]\n"                                                                             \
    "end\n"                                                                                        \
    "local function figure(scope, sku)\n"                                                          \
    "  local f = P .. 'f:' .. scope .. ':' .. sku\n"                                               \
    "  if not LF[f] then LF[f] = redis.call('HMGET', f, 'b', 'm', 'c') end\n"                      \
    "  return LF[f]\n"                                                                             \
    "end\n"                                                                                        \
    "local function scope_avail(scope, sku)\n"                                                     \
    "  local v = figure(scope, sku)\n"                                                             \
    "  local b = tonumber(v[1] or '0')\n"                                                          \
    "  local held = live(scope, sku)\n"                                                            \
    "  if v[2] then\n"                                                                             \
    "    for loc in string.gmatch(v[2], '[^\\n]+') do held = held + live('l:' .. loc, sku) end\n"  \
    "  end\n"                                                                                      \
    "  return b - held, b, held\n"                                                                 \
    "end\n"                                                                                        \
    "local function avail(scope, sku)\n"                                                           \
    "  local a, b, held = scope_avail(scope, sku)\n"                                               \
    "  if string.sub(scope, 1, 2) == 'l:' then\n"                                                  \
    "    local c = figure(scope, sku)[3]\n"                                                        \
    "    if c then\n"                                                                              \
    "      for ch in string.gmatch(c, '[^\\n]+') do\n"                                             \
    "        local x = scope_avail('c:' .. ch, sku)\n"                                             \
    "        if x < a then a = x end\n"                                                            \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return a, b, held\n"                                                                        \
    "end\n"

/* Retention of a hold's hash after its expiry, and of consumed lines (see holds.h). */
#define RETAIN_MS   "86400000"
#define CONSUMED_MS "60000"

/*
 * Check-and-hold of a batch of holds, one after the other (each all lines or none, exactly as
 * if each were its own script). ARGV: P count, then per hold: id fingerprint ttl_ms scope
 * checkout cart n (sku qty)×n. Returns one answer per hold: {'ok', now, expiry}, {'replay'},
 * {'conflict'}, {'unsynced'} or {'short', available per line…}.
 */
static struct redis_script create_script = {
    LUA_PRELUDE LUA_AVAIL
    "local synced = redis.call('EXISTS', P .. 'synced') == 1\n"
    "local MARK = {}\n" /* "scope\tsku" → earliest expiry already indexed by this call */
    "local function hold(id, fp, ttl, scope, chk, cart, n, i)\n"
    "  if not synced then return {'unsynced'} end\n"
    "  local hk = P .. 'h:' .. id\n"
    "  if redis.call('EXISTS', hk) == 1 then\n"
    "    if redis.call('HGET', hk, 'fp') ~= fp then return {'conflict'} end\n"
    "    return {'replay'}\n"
    "  end\n"
    "  local out, ok = {'short'}, true\n"
    "  for j = 0, n - 1 do\n"
    "    local a = avail(scope, ARGV[i + 2 * j])\n"
    "    if a < tonumber(ARGV[i + 1 + 2 * j]) then ok = false end\n"
    "    out[#out + 1] = tostring(a)\n"
    "  end\n"
    "  if not ok then return out end\n"
    "  local exp = now + tonumber(ttl)\n"
    "  local lines = ''\n"
    "  for j = 0, n - 1 do\n"
    "    local sku, q = ARGV[i + 2 * j], ARGV[i + 1 + 2 * j]\n"
    "    redis.call('ZADD', P .. 'z:' .. scope .. ':' .. sku, exp, id .. '|' .. q)\n"
    "    local qk = P .. 'q:' .. scope .. ':' .. sku\n"
    "    LQ[qk] = redis.call('INCRBY', qk, q)\n"
    "    local d = scope .. '\\t' .. sku\n"
    "    if not MARK[d] or exp < MARK[d] then\n" /* once per batch, unless earlier */
    "      redis.call('ZADD', P .. 'exp', 'LT', exp, d)\n"
    "      if not MARK[d] then redis.call('SADD', P .. 'dirty', d) end\n"
    "      MARK[d] = exp\n"
    "    end\n"
    "    lines = lines .. sku .. '\\t' .. q .. '\\n'\n"
    "  end\n"
    "  redis.call('HSET', hk, 'st', 'held', 'exp', exp, 'crt', now, 'fp', fp, 'scope', scope,\n"
    "    'lines', lines, 'chk', chk, 'cart', cart, 'ttl', ttl)\n"
    "  redis.call('PEXPIREAT', hk, exp + " RETAIN_MS ")\n"
    "  if chk ~= '' then redis.call('SET', P .. 'x:chk:' .. chk, id, 'PXAT', exp + " RETAIN_MS
    ") end\n"
    "  if cart ~= '' then redis.call('SET', P .. 'x:cart:' .. cart, id, 'PXAT', exp + " RETAIN_MS
    ") end\n"
    "  return {'ok', tostring(now), tostring(exp)}\n"
    "end\n"
    "local res, i = {}, 3\n"
    "for k = 1, tonumber(ARGV[2]) do\n"
    "  local n = tonumber(ARGV[i + 6])\n"
    "  res[k] = hold(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], n,\n"
    "    i + 7)\n"
    "  i = i + 7 + 2 * n\n"
    "end\n"
    "return res\n",
    ""};

/* ARGV: P id → {now, field, value, …} or {now} when absent */
static struct redis_script get_script = {LUA_PRELUDE
                                         "local r = redis.call('HGETALL', P .. 'h:' .. ARGV[2])\n"
                                         "table.insert(r, 1, tostring(now))\n"
                                         "return r\n",
                                         ""};

/* ARGV: P id ttl_ms */
static struct redis_script extend_script = {
    LUA_PRELUDE
    "local id = ARGV[2]\n"
    "local hk = P .. 'h:' .. id\n"
    "local v = redis.call('HMGET', hk, 'st', 'exp', 'scope', 'lines', 'chk', 'cart')\n"
    "if not v[1] then return {'missing'} end\n"
    "if v[1] ~= 'held' then return {'state', v[1]} end\n"
    "if tonumber(v[2]) <= now then return {'state', 'expired'} end\n"
    "local exp = now + tonumber(ARGV[3])\n"
    "for sku, q in string.gmatch(v[4], '([^\\t\\n]+)\\t(%d+)\\n') do\n"
    "  redis.call('ZADD', P .. 'z:' .. v[3] .. ':' .. sku, 'XX', exp, id .. '|' .. q)\n"
    "  redis.call('ZADD', P .. 'exp', 'LT', exp, v[3] .. '\\t' .. sku)\n"
    "end\n"
    "redis.call('HSET', hk, 'exp', exp, 'ttl', ARGV[3])\n"
    "redis.call('PEXPIREAT', hk, exp + " RETAIN_MS ")\n"
    "if v[5] ~= '' then redis.call('PEXPIREAT', P .. 'x:chk:' .. v[5], exp + " RETAIN_MS ") end\n"
    "if v[6] ~= '' then redis.call('PEXPIREAT', P .. 'x:cart:' .. v[6], exp + " RETAIN_MS ") end\n"
    "return {'ok'}\n",
    ""};

/* ARGV: P id */
static struct redis_script release_script = {
    LUA_PRELUDE
    "local id = ARGV[2]\n"
    "local hk = P .. 'h:' .. id\n"
    "local v = redis.call('HMGET', hk, 'st', 'exp', 'scope', 'lines')\n"
    "if not v[1] then return {'missing'} end\n"
    "if v[1] == 'confirmed' then return {'state', v[1]} end\n"
    "if v[1] == 'held' then\n"
    "  for sku, q in string.gmatch(v[4], '([^\\t\\n]+)\\t(%d+)\\n') do\n"
    "    if redis.call('ZREM', P .. 'z:' .. v[3] .. ':' .. sku, id .. '|' .. q) == 1 then\n"
    "      redis.call('DECRBY', P .. 'q:' .. v[3] .. ':' .. sku, q)\n"
    "    end\n"
    "    redis.call('ZREM', P .. 'exp', id .. '\\t' .. v[3] .. '\\t' .. sku)\n"
    "    if tonumber(v[2]) > now then\n"
    "      redis.call('SADD', P .. 'dirty', v[3] .. '\\t' .. sku)\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', hk, 'st', 'released')\n"
    "end\n"
    "return {'ok'}\n",
    ""};

/* ARGV: P scope sku → {available, base, held} */
static struct redis_script avail_script = {LUA_PRELUDE LUA_AVAIL
                                           "local a, b, held = avail(ARGV[2], ARGV[3])\n"
                                           "return {a, b, held}\n",
                                           ""};

/*
 * The sync: figures and hold events in one script. ARGV: P full nf (scope sku base members
 * channels)×nf ne (kind hold checkout cart)×ne. A confirmed hold's live lines become consumed
 * lines (for Postgres+Redis readers, see holds.h); a released one's scopes become dirty.
 */
static struct redis_script sync_script = {
    LUA_PRELUDE
    "local i = 4\n"
    "for _ = 1, tonumber(ARGV[3]) do\n"
    "  local f = P .. 'f:' .. ARGV[i] .. ':' .. ARGV[i + 1]\n"
    "  redis.call('HSET', f, 'b', ARGV[i + 2])\n"
    "  if ARGV[i + 3] ~= '' then redis.call('HSET', f, 'm', ARGV[i + 3])\n"
    "  else redis.call('HDEL', f, 'm') end\n"
    "  if ARGV[i + 4] ~= '' then redis.call('HSET', f, 'c', ARGV[i + 4])\n"
    "  else redis.call('HDEL', f, 'c') end\n"
    "  i = i + 5\n"
    "end\n"
    "local ne = tonumber(ARGV[i])\n"
    "i = i + 1\n"
    "local done = 0\n"
    "for _ = 1, ne do\n"
    "  local kind, id = ARGV[i], ARGV[i + 1]\n"
    "  if id == '' and ARGV[i + 2] ~= '' then id = redis.call('GET', P .. 'x:chk:' .. ARGV[i + 2]) "
    "or '' end\n"
    "  if id == '' and ARGV[i + 3] ~= '' then id = redis.call('GET', P .. 'x:cart:' .. ARGV[i + "
    "3]) or '' end\n"
    "  if id ~= '' then\n"
    "    local hk = P .. 'h:' .. id\n"
    "    local v = redis.call('HMGET', hk, 'st', 'exp', 'scope', 'lines')\n"
    "    if v[1] == 'held' then\n"
    "      local alive = tonumber(v[2]) > now\n"
    "      for sku, q in string.gmatch(v[4], '([^\\t\\n]+)\\t(%d+)\\n') do\n"
    "        local m = id .. '|' .. q\n"
    "        if redis.call('ZREM', P .. 'z:' .. v[3] .. ':' .. sku, m) == 1 then\n"
    "          redis.call('DECRBY', P .. 'q:' .. v[3] .. ':' .. sku, q)\n"
    "        end\n"
    "        redis.call('ZREM', P .. 'exp', id .. '\\t' .. v[3] .. '\\t' .. sku)\n"
    "        if alive and kind == 'confirm' then\n"
    "          local k = P .. 'k:' .. v[3] .. ':' .. sku\n"
    "          redis.call('ZREMRANGEBYSCORE', k, '-inf', now - " CONSUMED_MS ")\n"
    "          redis.call('ZADD', k, now, m)\n"
    "          redis.call('PEXPIRE', k, " CONSUMED_MS ")\n"
    "        elseif alive then\n"
    "          redis.call('SADD', P .. 'dirty', v[3] .. '\\t' .. sku)\n"
    "        end\n"
    "      end\n"
    "      redis.call('HSET', hk, 'st', kind == 'confirm' and 'confirmed' or 'released')\n"
    "      done = done + 1\n"
    "    end\n"
    "  end\n"
    "  i = i + 4\n"
    "end\n"
    "if ARGV[2] == '1' then redis.call('SET', P .. 'synced', now) end\n"
    "return done\n",
    ""};

/* ARGV: P → flat (sku, location) pairs of scopes to republish; moves them to a processing set
 * (deleted by done_script once queued in Postgres, so a crash in between loses nothing). */
static struct redis_script dirty_script = {
    LUA_PRELUDE
    "local pk = P .. 'dirty:proc'\n"
    "if redis.call('EXISTS', P .. 'dirty') == 1 then\n"
    "  redis.call('SUNIONSTORE', pk, pk, P .. 'dirty')\n"
    "  redis.call('DEL', P .. 'dirty')\n"
    "end\n"
    "for _, e in ipairs(redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now, 'LIMIT', "
    "0, 1000)) do\n"
    "  local s, sku = string.match(e, '^[^\\t]*\\t([^\\t]*)\\t(.*)$')\n"
    "  if s then\n" /* a line "id scope sku" of the layout before 2026-12-05 */
    "    redis.call('ZREM', P .. 'exp', e)\n"
    "  else\n" /* "scope sku": move it to its next expiry, if any */
    "    s, sku = string.match(e, '^([^\\t]*)\\t(.*)$')\n"
    "    local nx = redis.call('ZRANGEBYSCORE', P .. 'z:' .. s .. ':' .. sku, '(' .. now,\n"
    "      '+inf', 'WITHSCORES', 'LIMIT', 0, 1)\n"
    "    if #nx > 0 then redis.call('ZADD', P .. 'exp', nx[2], e)\n"
    "    else redis.call('ZREM', P .. 'exp', e) end\n"
    "  end\n"
    "  redis.call('SADD', pk, s .. '\\t' .. sku)\n"
    "end\n"
    "local out = {}\n"
    "for _, e in ipairs(redis.call('SMEMBERS', pk)) do\n"
    "  local s, sku = string.match(e, '^([^\\t]*)\\t(.*)$')\n"
    "  if string.sub(s, 1, 2) == 'l:' then\n"
    "    out[#out + 1] = sku\n"
    "    out[#out + 1] = string.sub(s, 3)\n"
    "  else\n"
    "    local m = redis.call('HGET', P .. 'f:' .. s .. ':' .. sku, 'm')\n"
    "    if m then\n"
    "      for loc in string.gmatch(m, '[^\\n]+') do\n"
    "        out[#out + 1] = sku\n"
    "        out[#out + 1] = loc\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* ARGV: P confirmed n (scope sku)×n → reserved per pair: live and recently consumed lines of
 * holds the caller's snapshot does not show confirmed. Read only. */
static struct redis_script reserved_script = {
    LUA_PRELUDE
    "local C, any = {}, false\n"
    "for r in string.gmatch(ARGV[2], '[^\\n]+') do C[r] = true any = true end\n"
    "local function confirmed(id)\n"
    "  if not any then return false end\n"
    "  if C['h:' .. id] then return true end\n"
    "  local v = redis.call('HMGET', P .. 'h:' .. id, 'chk', 'cart')\n"
    "  if v[1] and v[1] ~= '' and C['k:' .. v[1]] then return true end\n"
    "  if v[2] and v[2] ~= '' and C['t:' .. v[2]] then return true end\n"
    "  return false\n"
    "end\n"
    "local function add(key, min)\n"
    "  local s = 0\n"
    "  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, min, '+inf')) do\n"
    "    local id, q = string.match(m, '^(.*)|(%d+)$')\n"
    "    if not confirmed(id) then s = s + tonumber(q) end\n"
    "  end\n"
    "  return s\n"
    "end\n"
    "local out = {}\n"
    "for j = 0, tonumber(ARGV[3]) - 1 do\n"
    "  local k = ARGV[4 + 2 * j] .. ':' .. ARGV[5 + 2 * j]\n"
    "  if any then\n"
    "    out[#out + 1] = add(P .. 'z:' .. k, '(' .. now) + add(P .. 'k:' .. k, now - " CONSUMED_MS
    ")\n"
    "  else\n"
    "    local s = tonumber(redis.call('GET', P .. 'q:' .. k) or '0')\n"
    "    for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'z:' .. k, '-inf', now)) do\n"
    "      s = s - tonumber(string.match(m, '|(%d+)$'))\n"
    "    end\n"
    "    out[#out + 1] = s + add(P .. 'k:' .. k, now - " CONSUMED_MS ")\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

static struct redis_script done_script = {"return redis.call('DEL', ARGV[1] .. 'dirty:proc')\n",
                                          ""};

/* ---- the holds object */

/*
 * Holds waiting for Redis (holds_create_submit()). Concurrent creates go to Redis together:
 * CREATE_SENDERS sender threads each take what is queued (up to CREATE_BATCH_MAX holds), send
 * it as one script call, and hand every hold its answer (its done callback). So at most
 * CREATE_SENDERS calls are in flight, and while they are, new creates queue up for the next
 * one. Guarded by mu (never held across a system call); `head` is FIFO; `idle` counts senders
 * waiting on cv, so a submit signals only when one is.
 */
struct create_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct holds_create *head, **tail;
    unsigned idle, nthreads;
    bool stop;
    pthread_t threads[2];
};

#define CREATE_BATCH_MAX 32
#define CREATE_SENDERS   2 /* ≤ the size of create_queue.threads */

struct holds {
    struct service *svc;
    char prefix[256];
    struct availability_holds view;
    long interval_ms;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct metric *created, *refused, *synced, *sync_errors;
    struct create_queue cq;
};

struct holds_cache {
    size_t n;
    char **keys; /* "scope\tsku", sorted */
    int64_t *vals;
};

/* Growing argv for scripts; every string is owned. */
struct args {
    char **v;
    size_t n, cap;
    bool oom;
};

static void args_add(struct args *a, const char *s)
{
    char *d;

    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, cap * sizeof(*v));

        if (!v) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    d = strdup(s ? s : "");
    if (!d) {
        a->oom = true;
        return;
    }
    a->v[a->n++] = d;
}

static void args_int(struct args *a, int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRId64, v);
    args_add(a, buf);
}

static void args_release(struct args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* Run script with args; NULL (err set) on a Redis failure or a script error. */
static redisReply *run_script(struct holds *h, struct redis_script *s, struct args *a, char *err,
                              size_t errlen)
{
    redisReply *r;

    if (a->oom) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r = redis_eval(h->svc->redis, s, 0, (int)a->n, (const char **)a->v, NULL, err, errlen);
    if (r && r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis script error: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static bool reply_is(const redisReply *r, size_t i, const char *s)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements > i &&
           r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, s) == 0;
}

static int64_t reply_int(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static void scope_key(char *out, size_t len, bool channel, const char *id)
{
    snprintf(out, len, "%s%s", channel ? "c:" : "l:", id);
}

/* Fill out from a flat HGETALL reply starting at element `from`; now is Redis' time. */
static void hold_from_hash(struct hold *out, const redisReply *r, size_t from, int64_t now)
{
    const char *lines = "", *scope = "";

    for (size_t i = from; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;

        if (!k || !v)
            continue;
        if (strcmp(k, "st") == 0)
            snprintf(out->state, sizeof(out->state), "%s", v);
        else if (strcmp(k, "exp") == 0)
            out->expires_at_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "crt") == 0)
            out->created_at_ms = strtoll(v, NULL, 10);
        else if (strcmp(k, "ttl") == 0)
            out->ttl_s = strtoll(v, NULL, 10) / 1000;
        else if (strcmp(k, "scope") == 0)
            scope = v;
        else if (strcmp(k, "lines") == 0)
            lines = v;
        else if (strcmp(k, "chk") == 0)
            snprintf(out->checkout_id, sizeof(out->checkout_id), "%s", v);
        else if (strcmp(k, "cart") == 0)
            snprintf(out->cart_token, sizeof(out->cart_token), "%s", v);
    }
    out->channel = strncmp(scope, "c:", 2) == 0;
    snprintf(out->scope_id, sizeof(out->scope_id), "%s", strlen(scope) > 2 ? scope + 2 : "");
    out->nlines = 0;
    while (*lines && out->nlines < HOLDS_MAX_LINES) {
        const char *tab = strchr(lines, '\t'), *nl = tab ? strchr(tab, '\n') : NULL;
        struct hold_line *l = &out->lines[out->nlines];

        if (!tab || !nl)
            break;
        memset(l, 0, sizeof(*l));
        snprintf(l->sku, sizeof(l->sku), "%.*s", (int)(tab - lines), lines);
        l->quantity = strtoll(tab + 1, NULL, 10);
        out->nlines++;
        lines = nl + 1;
    }
    if (strcmp(out->state, "held") == 0 && out->expires_at_ms <= now)
        snprintf(out->state, sizeof(out->state), "expired");
}

static int fetch(struct holds *h, const char *hold_id, struct hold *out, char *err, size_t errlen)
{
    char id[201]; /* hold_id may point into out */
    struct args a = {0};
    redisReply *r;
    int rc;

    snprintf(id, sizeof(id), "%s", hold_id);
    args_add(&a, h->prefix);
    args_add(&a, id);
    r = run_script(h, &get_script, &a, err, errlen);
    args_release(&a);
    if (!r)
        return HOLDS_ERR_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        snprintf(err, errlen, "no hold %s", id);
        rc = HOLDS_ERR_NOT_FOUND;
    } else {
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", id);
        hold_from_hash(out, r, 1, reply_int(r->element[0]));
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/* FNV-1a of the request's canonical form: a retry must ask for the very same thing. */
static void fingerprint(const struct hold *req, char out[17])
{
    uint64_t x = 1469598103934665603ULL;
    char buf[512];

    snprintf(buf, sizeof(buf), "%d|%s|%s|%s|%" PRId64, req->channel, req->scope_id,
             req->checkout_id, req->cart_token, req->ttl_s);
    for (const char *p = buf; *p; p++)
        x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = 0; i < req->nlines; i++) {
        snprintf(buf, sizeof(buf), "|%s:%" PRId64, req->lines[i].sku, req->lines[i].quantity);
        for (const char *p = buf; *p; p++)
            x = (x ^ (unsigned char)*p) * 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, x);
}

/* Map one hold's answer of the create script (a script error or a lost connection: r NULL,
 * w->err already set) into w->rc and w->req. CREATE_REPLAY means: read the stored hold. */
#define CREATE_REPLAY 1

static void create_answer(struct holds *h, struct holds_create *w, const redisReply *r)
{
    struct hold *req = w->req;
    char *err = w->err;
    size_t errlen = w->errlen;

    if (!r) {
        w->rc = HOLDS_ERR_UNAVAILABLE;
    } else if (reply_is(r, 0, "ok") && r->elements == 3) {
        /* the request is what was stored: no second round trip */
        snprintf(req->state, sizeof(req->state), "held");
        req->created_at_ms = reply_int(r->element[1]);
        req->expires_at_ms = reply_int(r->element[2]);
        metric_add(h->created, 1);
        w->rc = 0;
    } else if (reply_is(r, 0, "replay")) {
        w->rc = CREATE_REPLAY;
    } else if (reply_is(r, 0, "conflict")) {
        snprintf(err, errlen, "idempotency key %s was used for another request", w->idem_key);
        w->rc = HOLDS_ERR_CONFLICT;
    } else if (reply_is(r, 0, "unsynced")) {
        snprintf(err, errlen,
                 "reservations unavailable: stock figures not yet loaded into Redis, retry");
        w->rc = HOLDS_ERR_UNAVAILABLE;
    } else if (reply_is(r, 0, "short") && r->elements == req->nlines + 1) {
        size_t off = 0;

        off += (size_t)snprintf(err, errlen, "not enough stock at %s:", req->scope_id);
        for (size_t i = 0; i < req->nlines; i++) {
            struct hold_line *l = &req->lines[i];
            int64_t av = reply_int(r->element[i + 1]);

            l->available = av > 0 ? av : 0;
            l->short_ = av < l->quantity;
            if (l->short_ && off < errlen)
                off += (size_t)snprintf(err + off, errlen - off,
                                        " %s: %" PRId64 " available, %" PRId64 " requested;",
                                        l->sku, l->available, l->quantity);
        }
        if (off > 0 && off < errlen && err[off - 1] == ';')
            err[off - 1] = '\0';
        metric_add(h->refused, 1);
        w->rc = HOLDS_ERR_SHORT;
    } else {
        snprintf(err, errlen, "unexpected reply from the hold script");
        w->rc = HOLDS_ERR_UNAVAILABLE;
    }
}

/* Run the create script on the n holds of batch (a list linked by next), set each one's
 * answer and call its done. Called on a sender thread, without the queue lock. */
static void create_send(struct holds *h, struct holds_create *batch, size_t n)
{
    struct args a = {0};
    redisReply *r;
    char err[512];
    size_t i = 0;

    args_add(&a, h->prefix);
    args_int(&a, (int64_t)n);
    for (struct holds_create *w = batch; w; w = w->next) {
        const struct hold *req = w->req;

        args_add(&a, req->id);
        args_add(&a, w->fp);
        args_int(&a, req->ttl_s * 1000);
        args_add(&a, w->scope);
        args_add(&a, req->checkout_id);
        args_add(&a, req->cart_token);
        args_int(&a, (int64_t)req->nlines);
        for (size_t j = 0; j < req->nlines; j++) {
            args_add(&a, req->lines[j].sku);
            args_int(&a, req->lines[j].quantity);
        }
    }
    r = run_script(h, &create_script, &a, err, sizeof(err));
    args_release(&a);
    if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != n)) {
        snprintf(err, sizeof(err), "unexpected reply from the hold script");
        freeReplyObject(r);
        r = NULL;
    }
    for (struct holds_create *w = batch, *next; w; w = next, i++) {
        next = w->next; /* w may be freed as soon as done is called */
        if (!r)
            snprintf(w->err, w->errlen, "%s", err);
        create_answer(h, w, r ? r->element[i] : NULL);
        w->done(w);
    }
    freeReplyObject(r);
}

/* Unlink up to max holds from the head of q (locked) into a batch of *n. */
static struct holds_create *create_take(struct create_queue *q, size_t max, size_t *n)
{
    struct holds_create *batch = q->head, **end = &q->head;

    for (*n = 0; *end && *n < max; end = &(*end)->next)
        (*n)++;
    q->head = *end;
    *end = NULL;
    if (!q->head)
        q->tail = &q->head;
    return batch;
}

/* A sender: send what is queued, batch after batch; once stopped, only after the queue is
 * empty, so every submitted hold gets its answer. */
static void *create_sender_main(void *arg)
{
    struct holds *h = arg;
    struct create_queue *q = &h->cq;

    pthread_mutex_lock(&q->mu);
    for (;;) {
        struct holds_create *batch;
        size_t n;

        while (!q->head && !q->stop) {
            q->idle++;
            pthread_cond_wait(&q->cv, &q->mu);
            q->idle--;
        }
        if (!q->head)
            break;
        batch = create_take(q, CREATE_BATCH_MAX, &n);
        pthread_mutex_unlock(&q->mu);
        create_send(h, batch, n);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

void holds_create_submit(struct holds *h, struct holds_create *c)
{
    struct create_queue *q = &h->cq;
    char name[512];

    snprintf(name, sizeof(name), "hold/%s/%s", h->svc->tenant_id, c->idem_key);
    uuid_from_name(name, c->req->id);
    fingerprint(c->req, c->fp);
    scope_key(c->scope, sizeof(c->scope), c->req->channel, c->req->scope_id);
    c->next = NULL;
    pthread_mutex_lock(&q->mu);
    *q->tail = c;
    q->tail = &c->next;
    if (q->idle > 0)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int holds_create_finish(struct holds *h, struct holds_create *c)
{
    if (c->rc == CREATE_REPLAY) {
        int rc = fetch(h, c->req->id, c->req, c->err, c->errlen);

        return rc ? rc : 1;
    }
    return c->rc;
}

int holds_get(struct holds *h, const char *id, struct hold *out, char *err, size_t errlen)
{
    return fetch(h, id, out, err, errlen);
}

/* Run a state-changing script on a hold and map its answer. */
static int hold_change(struct holds *h, struct redis_script *s, const char *id, int64_t ttl_ms,
                       struct hold *out, char *err, size_t errlen)
{
    struct args a = {0};
    redisReply *r;
    int rc = 0;

    args_add(&a, h->prefix);
    args_add(&a, id);
    if (ttl_ms > 0)
        args_int(&a, ttl_ms);
    r = run_script(h, s, &a, err, errlen);
    args_release(&a);
    if (!r)
        return HOLDS_ERR_UNAVAILABLE;
    if (reply_is(r, 0, "missing")) {
        snprintf(err, errlen, "no hold %s", id);
        rc = HOLDS_ERR_NOT_FOUND;
    } else if (reply_is(r, 0, "state") && r->elements > 1) {
        snprintf(err, errlen, "hold %s is %s", id, r->element[1]->str);
        rc = HOLDS_ERR_STATE;
    }
    freeReplyObject(r);
    if (rc == 0)
        rc = fetch(h, id, out, err, errlen);
    return rc;
}

int holds_extend(struct holds *h, const char *id, int64_t ttl_s, struct hold *out, char *err,
                 size_t errlen)
{
    return hold_change(h, &extend_script, id, ttl_s * 1000, out, err, errlen);
}

int holds_release(struct holds *h, const char *id, struct hold *out, char *err, size_t errlen)
{
    return hold_change(h, &release_script, id, 0, out, err, errlen);
}

int holds_availability(struct holds *h, bool channel, const char *scope_id, const char *sku,
                       int64_t *base, int64_t *held, int64_t *available, char *err, size_t errlen)
{
    char scope[256];
    struct args a = {0};
    redisReply *r;

    scope_key(scope, sizeof(scope), channel, scope_id);
    args_add(&a, h->prefix);
    args_add(&a, scope);
    args_add(&a, sku);
    r = run_script(h, &avail_script, &a, err, errlen);
    args_release(&a);
    if (!r)
        return HOLDS_ERR_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        freeReplyObject(r);
        snprintf(err, errlen, "unexpected reply from the availability script");
        return HOLDS_ERR_UNAVAILABLE;
    }
    *available = reply_int(r->element[0]);
    *base = reply_int(r->element[1]);
    *held = reply_int(r->element[2]);
    freeReplyObject(r);
    return 0;
}

/* ---- readers that combine Postgres figures with Redis holds */

struct availability_holds *holds_view(struct holds *h)
{
    return h ? &h->view : NULL;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void holds_view_release(struct availability_holds *view)
{
    struct holds_cache *c = view ? view->cache : NULL;

    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i]);
    free(c->keys);
    free(c->vals);
    free(c);
    view->cache = NULL;
}

void holds_view_prefetch(struct availability_holds *view, const char *const *scopes,
                         const char *const *skus, size_t n)
{
    struct holds_cache *c;
    struct args a = {0};
    redisReply *r = NULL;
    char err[256];

    if (!view || !view->h || n == 0)
        return;
    holds_view_release(view);
    c = calloc(1, sizeof(*c));
    if (c) {
        c->keys = calloc(n, sizeof(*c->keys));
        c->vals = calloc(n, sizeof(*c->vals));
    }
    if (!c || !c->keys || !c->vals)
        goto fail;
    args_add(&a, view->h->prefix);
    args_add(&a, view->confirmed ? view->confirmed : "");
    args_int(&a, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        args_add(&a, scopes[i]);
        args_add(&a, skus[i]);
    }
    r = run_script(view->h, &reserved_script, &a, err, sizeof(err));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n)
        goto fail;
    /* keys and values sorted together: sort an index by key */
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(scopes[i]) + strlen(skus[i]) + 2 + 24;

        c->keys[i] = malloc(len);
        if (!c->keys[i])
            goto fail;
        /* the value rides after the key's NUL so one sort keeps them together */
        snprintf(c->keys[i], len, "%s\t%s", scopes[i], skus[i]);
        memcpy(c->keys[i] + strlen(c->keys[i]) + 1, &r->element[i]->integer, sizeof(int64_t));
        c->n++;
    }
    qsort(c->keys, c->n, sizeof(*c->keys), cmp_str);
    for (size_t i = 0; i < c->n; i++)
        memcpy(&c->vals[i], c->keys[i] + strlen(c->keys[i]) + 1, sizeof(int64_t));
    view->cache = c;
    freeReplyObject(r);
    args_release(&a);
    return;
fail:
    log_kv(LOG_LVL_WARN, "cannot read holds from Redis", "reason",
           a.oom ? "out of memory" : (r ? "bad reply" : err), NULL);
    view->failed = true;
    view->cache = c;
    holds_view_release(view);
    freeReplyObject(r);
    args_release(&a);
}

int64_t holds_view_reserved(struct availability_holds *view, const char *scope, const char *sku)
{
    char key[512];
    const char *kp = key;

    if (!view || !view->h)
        return 0;
    snprintf(key, sizeof(key), "%s\t%s", scope, sku);
    if (view->cache) {
        char **hit = bsearch(&kp, view->cache->keys, view->cache->n, sizeof(char *), cmp_str);

        if (hit)
            return view->cache->vals[hit - view->cache->keys];
    }
    if (view->failed)
        return 0;
    {
        const char *sc[1] = {scope}, *sk[1] = {sku};
        struct availability_holds one = *view;
        int64_t v;

        one.cache = NULL;
        holds_view_prefetch(&one, sc, sk, 1);
        if (one.failed) {
            view->failed = true;
            return 0;
        }
        v = one.cache && one.cache->n == 1 ? one.cache->vals[0] : 0;
        holds_view_release(&one);
        return v;
    }
}

/* ---- the batch call-out */

int holds_batch_hook(void *opaque, PGconn *conn, const struct ledger_event *evs, size_t n,
                     char *err, size_t errlen)
{
    struct pgarr c[5];
    const char *params[7];
    char nowbuf[32];
    size_t rows = 0;
    PGresult *res;
    int rc = -ENOMEM;

    for (int i = 0; i < 5; i++)
        pgarr_init(&c[i]);
    for (size_t i = 0; i < n; i++) {
        const Tillsync__V1__ShopOrderEvent *oe = evs[i].msg;
        const Tillsync__V1__ShopOrder *o;
        const char *kind;

        if (evs[i].topic != LEDGER_TOPIC_ORDERS || !oe || !(o = oe->order))
            continue;
        if (!*o->hold_id && !*o->checkout_id && !*o->cart_token)
            continue;
        if (oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED)
            kind = "confirm";
        else if (oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED)
            kind = "release";
        else
            continue;
        pgarr_text(&c[0], evs[i].event_id);
        pgarr_text(&c[1], kind);
        pgarr_text(&c[2], o->hold_id);
        pgarr_text(&c[3], o->checkout_id);
        pgarr_text(&c[4], o->cart_token);
        rows++;
    }
    if (rows == 0) {
        rc = 0;
        goto out;
    }
    snprintf(nowbuf, sizeof(nowbuf), "%" PRId64, (int64_t)time(NULL) * 1000);
    params[0] = opaque ? (const char *)opaque : "";
    for (int i = 0; i < 5; i++)
        if (!(params[i + 1] = pgarr_finish(&c[i])))
            goto out;
    params[6] = nowbuf;
    res = PQexecParams(conn,
                       "INSERT INTO hold_events (tenant_id, event_id, kind, hold_id, checkout_id, "
                       "cart_token, at_ms) SELECT $1, e, k, h, c, t, $7 FROM unnest($2::text[], "
                       "$3::text[], $4::text[], $5::text[], $6::text[]) AS u(e, k, h, c, t) "
                       "ON CONFLICT DO NOTHING",
                       7, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "hold events insert: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        rc = -EIO;
    } else {
        rc = 0;
    }
    PQclear(res);
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    for (int i = 0; i < 5; i++)
        pgarr_release(&c[i]);
    return rc;
}

/* ---- the sync */

static PGresult *q(PGconn *conn, const char *sql, int n, const char *const *params, char *err,
                   size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "holds sync: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Append "\n"-joined channels of set containing loc for sku. */
static void channels_of(const struct level_set *set, const char *sku, const char *loc, char *out,
                        size_t len)
{
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; i < set->n; i++) {
        const struct level *lv = &set->v[i];

        if (!lv->members || strcmp(lv->sku, sku) != 0)
            continue;
        for (size_t m = 0; m < lv->nmembers; m++)
            if (strcmp(lv->members[m].location_id, loc) == 0 && off < len)
                off += (size_t)snprintf(out + off, len - off, "%s%s", off ? "\n" : "",
                                        lv->location_id);
    }
}

/* Queue level publications for scopes whose figure holds changed or that expired. */
static int dirty_publish(struct holds *h, PGconn *conn, char *err, size_t errlen)
{
    struct args a = {0};
    struct pgarr skus, locs;
    redisReply *r;
    const char *params[3];
    PGresult *res;
    int rc = 0;

    args_add(&a, h->prefix);
    r = run_script(h, &dirty_script, &a, err, errlen);
    if (!r) {
        args_release(&a);
        return -EIO;
    }
    pgarr_init(&skus);
    pgarr_init(&locs);
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            pgarr_text(&skus, r->element[i]->str);
            pgarr_text(&locs, r->element[i + 1]->str);
        }
        params[0] = h->svc->tenant_id;
        params[1] = pgarr_finish(&skus);
        params[2] = pgarr_finish(&locs);
        if (!params[1] || !params[2]) {
            rc = -ENOMEM;
            goto out;
        }
        res = q(conn,
                "INSERT INTO level_outbox (tenant_id, skus, locations) "
                "VALUES ($1, $2::text[], $3::text[])",
                3, params, err, errlen);
        if (!res) {
            rc = -EIO;
            goto out;
        }
        PQclear(res);
    }
    freeReplyObject(run_script(h, &done_script, &a, err, errlen));
out:
    freeReplyObject(r);
    pgarr_release(&skus);
    pgarr_release(&locs);
    args_release(&a);
    return rc;
}

/* Read everything the sync writes under one snapshot (caller opened it). */
static int sync_read(struct holds *h, PGconn *conn, bool full, PGresult **events, PGresult **outbox,
                     struct level_set *set, char *err, size_t errlen)
{
    const char *params[3] = {h->svc->tenant_id, NULL, NULL};
    PGresult *keys;
    int rc;

    *events = q(conn,
                "SELECT coalesce(array_agg(id)::text, '{}'), "
                "  coalesce(array_agg(kind ORDER BY id), '{}'), "
                "  coalesce(array_agg(hold_id ORDER BY id), '{}'), "
                "  coalesce(array_agg(checkout_id ORDER BY id), '{}'), "
                "  coalesce(array_agg(cart_token ORDER BY id), '{}') "
                "FROM (SELECT * FROM hold_events WHERE tenant_id = $1 AND NOT synced "
                "ORDER BY id LIMIT 1000) e",
                1, params, err, errlen);
    if (!*events)
        return -EIO;
    /* every pending outbox row: a consumed hold's figure must go in the same script */
    *outbox = q(conn,
                "SELECT coalesce(array_agg(id)::text, '{}') FROM holds_sync_outbox "
                "WHERE tenant_id = $1",
                1, params, err, errlen);
    if (!*outbox)
        return -EIO;
    keys = q(conn,
             full ? "SELECT coalesce(array_agg(s)::text, '{}'), coalesce(array_agg(l)::text, '{}') "
                    "FROM (SELECT sku AS s, location_id AS l FROM balances WHERE tenant_id = $1 "
                    "UNION SELECT sku, location_id FROM safety_stock WHERE tenant_id = $1) k"
                  : "SELECT coalesce(array_agg(s)::text, '{}'), coalesce(array_agg(l)::text, '{}') "
                    "FROM (SELECT DISTINCT u.s, u.l FROM holds_sync_outbox o, "
                    "unnest(o.skus, o.locations) AS u(s, l) WHERE o.tenant_id = $1) k",
             1, params, err, errlen);
    if (!keys)
        return -EIO;
    params[1] = PQgetvalue(keys, 0, 0);
    params[2] = PQgetvalue(keys, 0, 1);
    rc = levels_load(conn, h->svc->tenant_id, params[1], params[2], NULL, set, err, errlen);
    PQclear(keys);
    return rc;
}

/* Split a Postgres text[] literal of simple elements ({a,b} or {"a b"}) into args. */
static void args_pgarray(struct args *a, const char *lit, size_t *count)
{
    const char *p = lit;

    *count = 0;
    if (*p == '{')
        p++;
    while (*p && *p != '}') {
        char buf[512];
        size_t n = 0;

        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (n + 1 < sizeof(buf))
                    buf[n++] = *p;
            }
            if (*p == '"')
                p++;
        } else {
            for (; *p && *p != ',' && *p != '}'; p++)
                if (n + 1 < sizeof(buf))
                    buf[n++] = *p;
            if (n == 4 && memcmp(buf, "NULL", 4) == 0)
                n = 0;
        }
        buf[n] = '\0';
        args_add(a, buf);
        (*count)++;
        if (*p == ',')
            p++;
    }
}

int holds_sync_round(struct holds *h, char *err, size_t errlen)
{
    const char *params[2] = {h->svc->tenant_id, NULL};
    PGconn *conn = pg_acquire(h->svc->pg, 2000, err, errlen);
    PGresult *res = NULL, *events = NULL, *outbox = NULL;
    struct level_set set = {0};
    struct args a = {0};
    redisReply *r = NULL;
    bool locked = false, full;
    int rc = -EIO, written = 0;

    if (!conn)
        return -EIO;
    /* one syncing replica at a time, so a later round always carries a later snapshot */
    res = q(conn, "SELECT pg_try_advisory_lock(hashtext('tillsync.holds_sync/' || $1))", 1, params,
            err, errlen);
    if (!res)
        goto out;
    locked = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    res = NULL;
    if (!locked) {
        rc = 0;
        goto out;
    }
    r = redis_command(h->svc->redis, err, errlen, "EXISTS %ssynced", h->prefix);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        goto out;
    full = r->integer == 0;
    freeReplyObject(r);
    r = NULL;
    res = q(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err, errlen);
    if (!res)
        goto out;
    PQclear(res);
    res = NULL;
    rc = sync_read(h, conn, full, &events, &outbox, &set, err, errlen);
    PQclear(PQexec(conn, rc ? "ROLLBACK" : "COMMIT"));
    if (rc)
        goto out;
    {
        char members[4096], chans[4096], scope[256];
        size_t nf = 0, ne = 0, nk = 0, nh = 0, nc = 0, nt = 0;

        args_add(&a, h->prefix);
        args_add(&a, full ? "1" : "0");
        args_add(&a, "0"); /* nf, set below */
        for (size_t i = 0; i < set.n; i++) {
            const struct level *lv = &set.v[i];
            size_t off = 0;

            members[0] = '\0';
            for (size_t m = 0; m < lv->nmembers && off < sizeof(members); m++)
                off += (size_t)snprintf(members + off, sizeof(members) - off, "%s%s", m ? "\n" : "",
                                        lv->members[m].location_id);
            if (lv->members)
                chans[0] = '\0';
            else
                channels_of(&set, lv->sku, lv->location_id, chans, sizeof(chans));
            scope_key(scope, sizeof(scope), lv->members != NULL, lv->location_id);
            args_add(&a, scope);
            args_add(&a, lv->sku);
            args_int(&a, lv->available);
            args_add(&a, members);
            args_add(&a, chans);
            nf++;
        }
        if (!a.oom) {
            free(a.v[2]);
            a.v[2] = NULL;
            {
                char nb[32];

                snprintf(nb, sizeof(nb), "%zu", nf);
                a.v[2] = strdup(nb);
                if (!a.v[2])
                    a.oom = true;
            }
        }
        {
            struct args ev = {0};
            size_t ids;

            args_pgarray(&ev, PQgetvalue(events, 0, 1), &nk);
            args_pgarray(&ev, PQgetvalue(events, 0, 2), &nh);
            args_pgarray(&ev, PQgetvalue(events, 0, 3), &nc);
            args_pgarray(&ev, PQgetvalue(events, 0, 4), &nt);
            ids = nk;
            if (ev.oom || nh != ids || nc != ids || nt != ids) {
                args_release(&ev);
                snprintf(err, errlen, "holds sync: cannot read hold events");
                rc = -EIO;
                goto out;
            }
            ne = ids;
            args_int(&a, (int64_t)ne);
            for (size_t i = 0; i < ne; i++) {
                args_add(&a, ev.v[i]);
                args_add(&a, ev.v[ids + i]);
                args_add(&a, ev.v[2 * ids + i]);
                args_add(&a, ev.v[3 * ids + i]);
            }
            args_release(&ev);
        }
        if (nf > 0 || ne > 0 || full) {
            r = run_script(h, &sync_script, &a, err, errlen);
            if (!r) {
                rc = -EIO;
                goto out;
            }
            written = (int)(nf + ne);
        }
    }
    /* Redis has it: mark the events, drop the outbox rows read (by id: later ones stay) */
    params[1] = PQgetvalue(events, 0, 0);
    res = q(conn, "UPDATE hold_events SET synced = true WHERE tenant_id = $1 AND id = ANY($2)", 2,
            params, err, errlen);
    if (!res)
        goto out;
    PQclear(res);
    params[1] = PQgetvalue(outbox, 0, 0);
    res = q(conn, "DELETE FROM holds_sync_outbox WHERE tenant_id = $1 AND id = ANY($2)", 2, params,
            err, errlen);
    if (!res)
        goto out;
    PQclear(res);
    res = q(conn,
            "DELETE FROM hold_events WHERE tenant_id = $1 AND synced "
            "AND at_ms < (extract(epoch FROM now()) * 1000)::bigint - 86400000",
            1, params, err, errlen);
    if (!res)
        goto out;
    PQclear(res);
    res = NULL;
    rc = dirty_publish(h, conn, err, errlen);
    if (rc == 0 && written > 0)
        metric_add(h->synced, written);
out:
    if (rc < 0)
        metric_add(h->sync_errors, 1);
    if (locked)
        PQclear(PQexecParams(conn,
                             "SELECT pg_advisory_unlock(hashtext('tillsync.holds_sync/' || $1))", 1,
                             NULL, params, NULL, NULL, 0));
    freeReplyObject(r);
    args_release(&a);
    level_set_release(&set);
    PQclear(events);
    PQclear(outbox);
    PQclear(res);
    pg_release(h->svc->pg, conn);
    return rc < 0 ? rc : written;
}

static void *sync_main(void *arg)
{
    struct holds *h = arg;
    bool failing = false;

    for (;;) {
        char err[512];
        int n;
        struct timespec until;

        pthread_mutex_lock(&h->mu);
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            break;
        }
        pthread_mutex_unlock(&h->mu);
        n = holds_sync_round(h, err, sizeof(err));
        if (n < 0 && !failing)
            log_kv(LOG_LVL_WARN, "holds sync failed, retrying", "reason", err, NULL);
        else if (n >= 0 && failing)
            log_kv(LOG_LVL_INFO, "holds sync recovered", NULL);
        failing = n < 0;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (h->interval_ms % 1000) * 1000000L;
        until.tv_sec += h->interval_ms / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&h->mu);
        if (!h->stop)
            pthread_cond_timedwait(&h->cv, &h->mu, &until);
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

struct holds *holds_new(struct service *svc, long interval_ms, char *err, size_t errlen)
{
    struct holds *h = calloc(1, sizeof(*h));

    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->svc = svc;
    snprintf(h->prefix, sizeof(h->prefix), "ts:{%s}:", svc->tenant_id);
    h->view.h = h;
    h->interval_ms = interval_ms;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_mutex_init(&h->cq.mu, NULL);
    pthread_cond_init(&h->cq.cv, NULL);
    h->cq.tail = &h->cq.head;
    if (svc->metrics) {
        h->created = metrics_counter(svc->metrics, "ledger_holds_created_total",
                                     "Checkout and pickup holds created", NULL);
        h->refused = metrics_counter(svc->metrics, "ledger_holds_refused_total",
                                     "Holds refused for want of stock (409)", NULL);
        h->synced = metrics_counter(svc->metrics, "ledger_holds_synced_total",
                                    "Figures and hold events written to Redis by the sync", NULL);
        h->sync_errors = metrics_counter(svc->metrics, "ledger_holds_sync_errors_total",
                                         "Holds sync rounds that failed and will be retried", NULL);
    }
    for (; h->cq.nthreads < CREATE_SENDERS; h->cq.nthreads++)
        if (pthread_create(&h->cq.threads[h->cq.nthreads], NULL, create_sender_main, h) != 0) {
            snprintf(err, errlen, "cannot start the holds sender threads");
            holds_free(h);
            return NULL;
        }
    if (interval_ms > 0) {
        if (pthread_create(&h->thread, NULL, sync_main, h) != 0) {
            snprintf(err, errlen, "cannot start the holds sync thread");
            holds_free(h);
            return NULL;
        }
        h->started = true;
    }
    return h;
}

void holds_stop(struct holds *h)
{
    if (!h || !h->started)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    h->started = false;
}

void holds_free(struct holds *h)
{
    if (!h)
        return;
    holds_stop(h);
    pthread_mutex_lock(&h->cq.mu);
    h->cq.stop = true;
    pthread_cond_broadcast(&h->cq.cv);
    pthread_mutex_unlock(&h->cq.mu);
    for (unsigned i = 0; i < h->cq.nthreads; i++)
        pthread_join(h->cq.threads[i], NULL);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cq.cv);
    pthread_mutex_destroy(&h->cq.mu);
    free(h);
}
