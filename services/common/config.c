/* config — see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_FILE_MAX (1024 * 1024) /* largest NAME_FILE we read */

static bool is_string_type(enum config_type t)
{
    return t == CONFIG_STR || t == CONFIG_SECRET || t == CONFIG_HOSTPORT || t == CONFIG_URL;
}

/* Copies at most 64 bytes of v into buf for an error message, with anything that is not
 * printable ASCII (or is a quote) shown as '?', so the message stays one line. */
static const char *shown(const char *v, char *buf, size_t cap)
{
    size_t i = 0;

    for (; v[i] && i < 64 && i + 4 < cap; i++) {
        unsigned char c = (unsigned char)v[i];
        buf[i] = (c < 0x20 || c >= 0x7f || c == '"') ? '?' : (char)c;
    }
    if (v[i] && i + 4 < cap) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* Reads path into a malloc'd NUL-terminated string with trailing \n / \r removed.
 * Returns 0, or a negative errno (-EINVAL for a NUL byte, -EFBIG beyond CONFIG_FILE_MAX). */
static int read_value_file(const char *path, char **out)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;

    *out = NULL;
    f = fopen(path, "rb");
    if (!f)
        return -errno;
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        rc = -EIO; /* e.g. the path is a directory */
        goto out;
    }
    if (len > CONFIG_FILE_MAX) {
        rc = -EFBIG;
        goto out;
    }
    if (memchr(buf, '\0', len)) {
        rc = -EINVAL;
        goto out;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* host:port, [v6]:port or :port; port 0..65535, at most 5 digits. */
static bool valid_hostport(const char *v)
{
    const char *colon;

    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close == v + 1 || close[1] != ':')
            return false;
        bool zone = false; /* after '%': an interface name */
        for (const char *p = v + 1; p < close; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '%' && !zone)
                zone = true;
            else if (zone ? !(isalnum(c) || c == '-' || c == '_' || c == '.')
                          : !(isxdigit(c) || c == ':' || c == '.'))
                return false;
        }
        colon = close + 1;
    } else {
        colon = strchr(v, ':');
        if (!colon || strchr(colon + 1, ':'))
            return false;
        for (const char *p = v; p < colon; p++)
            if (isspace((unsigned char)*p) || *p == '/' || *p == '@' || *p == '[' || *p == ']')
                return false;
    }
    const char *port = colon + 1;
    size_t nd = strlen(port);
    if (nd == 0 || nd > 5)
        return false;
    long val = 0;
    for (size_t i = 0; i < nd; i++) {
        if (!isdigit((unsigned char)port[i]))
            return false;
        val = val * 10 + (port[i] - '0');
    }
    return val <= 65535;
}

/* scheme "://" with scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") (RFC 3986). */
static bool valid_url(const char *v)
{
    size_t i = 0;

    if (!isalpha((unsigned char)v[0]))
        return false;
    while (isalnum((unsigned char)v[i]) || v[i] == '+' || v[i] == '-' || v[i] == '.')
        i++;
    return strncmp(v + i, "://", 3) == 0;
}

/* Validates value v of var and stores it in var->out. */
static int config_store(const struct config_var *var, const char *v, char *err, size_t errlen)
{
    char show[80];

    switch (var->type) {
    case CONFIG_INT: {
        char *end = NULL;
        long lo = var->min, hi = var->max;
        if (lo == 0 && hi == 0) {
            lo = LONG_MIN;
            hi = LONG_MAX;
        }
        errno = 0;
        long val = strtol(v, &end, 10);
        if (end == v || *end != '\0' || isspace((unsigned char)v[0])) {
            snprintf(err, errlen, "%s: \"%s\" is not an integer", var->name,
                     shown(v, show, sizeof(show)));
            return -EINVAL;
        }
        if ((errno == ERANGE && val == LONG_MIN) || val < lo) {
            snprintf(err, errlen, "%s: %s is below the minimum %ld", var->name,
                     shown(v, show, sizeof(show)), lo);
            return -EINVAL;
        }
        if ((errno == ERANGE && val == LONG_MAX) || val > hi) {
            snprintf(err, errlen, "%s: %s is above the maximum %ld", var->name,
                     shown(v, show, sizeof(show)), hi);
            return -EINVAL;
        }
        *(long *)var->out = val;
        return 0;
    }
    case CONFIG_BOOL:
        if (!parse_bool(v, (bool *)var->out)) {
            snprintf(err, errlen, "%s: \"%s\" is not a boolean (true/false, 1/0, yes/no)",
                     var->name, shown(v, show, sizeof(show)));
            return -EINVAL;
        }
        return 0;
    case CONFIG_HOSTPORT:
        if (!valid_hostport(v)) {
            snprintf(err, errlen, "%s: \"%s\" is not host:port", var->name,
                     shown(v, show, sizeof(show)));
            return -EINVAL;
        }
        break;
    case CONFIG_URL:
        if (!valid_url(v)) {
            /* the value is not echoed: a connection URL may carry a password */
            snprintf(err, errlen, "%s: not a URL (expected scheme://...)", var->name);
            return -EINVAL;
        }
        break;
    case CONFIG_STR:
    case CONFIG_SECRET:
        break;
    default:
        snprintf(err, errlen, "%s: unknown config type %d", var->name, (int)var->type);
        return -EINVAL;
    }
    char *copy = strdup(v);
    if (!copy) {
        snprintf(err, errlen, "%s: out of memory", var->name);
        return -ENOMEM;
    }
    *(char **)var->out = copy;
    return 0;
}

/* Sets var->out to its zero value. */
static void config_clear(const struct config_var *var)
{
    if (!var->out)
        return;
    if (is_string_type(var->type))
        *(char **)var->out = NULL;
    else if (var->type == CONFIG_INT)
        *(long *)var->out = 0;
    else if (var->type == CONFIG_BOOL)
        *(bool *)var->out = false;
}

/* Loads one variable. */
static int config_load_one(const struct config_var *var, char *err, size_t errlen)
{
    char fname[256];
    const char *env, *fpath;
    char *filebuf = NULL;
    const char *value = NULL;
    int rc = 0;

    if (!var->name || !var->out) {
        snprintf(err, errlen, "%s: table entry without name or out",
                 var->name ? var->name : "(null)");
        return -EINVAL;
    }
    if ((size_t)snprintf(fname, sizeof(fname), "%s_FILE", var->name) >= sizeof(fname)) {
        snprintf(err, errlen, "%s: variable name too long", var->name);
        return -EINVAL;
    }
    env = getenv(var->name);
    fpath = getenv(fname);
    if (env && !*env)
        env = NULL;
    if (fpath && !*fpath)
        fpath = NULL;
    if (env && fpath) {
        snprintf(err, errlen, "%s: both %s and %s are set; set only one", var->name, var->name,
                 fname);
        return -EINVAL;
    }
    if (fpath) {
        char show[80];
        rc = read_value_file(fpath, &filebuf);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "%s: out of memory", fname);
            goto out;
        }
        if (rc) {
            snprintf(err, errlen, "%s: cannot read \"%s\": %s", fname,
                     shown(fpath, show, sizeof(show)),
                     rc == -EINVAL  ? "file contains a NUL byte"
                     : rc == -EFBIG ? "file larger than 1 MiB"
                                    : strerror(-rc));
            rc = -EINVAL;
            goto out;
        }
        if (*filebuf)
            value = filebuf;
    } else {
        value = env;
    }
    if (!value) {
        if (var->required) {
            snprintf(err, errlen, "%s: required but not set (set %s or %s)", var->name, var->name,
                     fname);
            rc = -EINVAL;
            goto out;
        }
        if (!var->def || !*var->def)
            goto out; /* stays at its zero value */
        value = var->def;
    }
    rc = config_store(var, value, err, errlen);
out:
    if (filebuf) {
        /* the file may hold a secret: do not leave it in freed memory */
        memset(filebuf, 0, strlen(filebuf));
        free(filebuf);
    }
    return rc;
}

int config_load(const struct config_var *vars, size_t n, char *err, size_t errlen)
{
    char dummy[1];
    int rc;

    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    for (size_t i = 0; i < n; i++)
        config_clear(&vars[i]);
    for (size_t i = 0; i < n; i++) {
        rc = config_load_one(&vars[i], err, errlen);
        if (rc) {
            config_release(vars, n);
            return rc;
        }
    }
    return 0;
}

void config_release(const struct config_var *vars, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!vars[i].out || !is_string_type(vars[i].type))
            continue;
        char **p = vars[i].out;
        free(*p);
        *p = NULL;
    }
}

/* Writes s with '|' escaped and newlines as spaces (a Markdown table cell). */
static void md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

void config_print_markdown(const struct config_var *vars, size_t n, FILE *out)
{
    fputs("| Variable | Required | Default | Description |\n", out);
    fputs("| --- | --- | --- | --- |\n", out);
    for (size_t i = 0; i < n; i++) {
        const struct config_var *v = &vars[i];
        fprintf(out, "| `%s` | %s | ", v->name, v->required ? "yes" : "no");
        if (v->def && *v->def && v->type != CONFIG_SECRET) {
            fputc('`', out);
            md_cell(out, v->def);
            fputc('`', out);
        } else if (v->def && *v->def) {
            fputs("(set)", out);
        }
        fputs(" | ", out);
        md_cell(out, v->help);
        if (v->type == CONFIG_SECRET)
            fprintf(out, "%s(secret; %s_FILE accepted)", v->help && *v->help ? " " : "", v->name);
        fputs(" |\n", out);
    }
}
