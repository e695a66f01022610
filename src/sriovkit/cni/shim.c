/*
 * sriovkit's static CNI shim: forward one CNI invocation to the node agent.
 *
 * The same client as src/sriovkit/cni/shim.py (read its docstring first), for hosts with no
 * Python: a container runtime executes it once per verb; it must start in well under 1 ms.
 * It speaks exactly the Python shim's framing (big-endian):
 *
 *   request  "SKC1" | u32 len(env) | u32 len(stdin) | env | stdin
 *            env = "\0"-joined "KEY=VALUE" of the CNI_* and SRIOVKIT_* variables only
 *   answer   "SKR1" | u32 exit code | u32 len(stdout) | stdout
 *
 * One binary serves every plugin type: it is installed once under each plugin's file name
 * (today `sriov`) and the agent picks the plugin from the config's `type`, as for the Python
 * shim. Settings are not compiled in: a runtime gives a plugin only CNI_* variables, PATH and
 * little else, and libcni runs plugins with a reduced environment (podman's DEL from conmon), so
 * they are read from `sriovkit-cni.conf` in the directory of the executable itself
 * (/proc/self/exe, symlinks resolved), written by `sriovkit install-cni` beside it:
 *
 *   # comment lines and empty lines are allowed
 *   socket=/run/sriovkit/agent.sock     required, absolute, < 108 bytes
 *   state_dir=/var/lib/sriovkit         required, absolute
 *   root=/                              required, absolute
 *   fallback=/usr/bin/python3           optional: a host Python that can import sriovkit
 *
 * Each key once, nothing else; the file must be a regular file (not a symlink) owned by root
 * (or by the user running the shim) and writable by its owner only. The baked state_dir and root
 * win over the caller's environment (sent as SRIOVKIT_STATE_DIR and SRIOVKIT_ROOT); the caller's
 * SRIOVKIT_AGENT_SOCKET is dropped. SRIOVKIT_AGENT=off skips the agent.
 *
 * VERSION is answered here byte for byte as `dispatch.execute` answers it (a port of the Python
 * shim's `version_answer`). When the agent cannot be reached, or dies before answering anything
 * but an ADD: with `fallback`, exec `<fallback> -I -m sriovkit.cni.shim` (the in-process path)
 * with the request's stdin; without, ADD/CHECK/GC fail with CNI code 11 and STATUS with 50, naming
 * the socket, and DEL is written to the pending-DEL journal (state_dir/pending-del/) that the agent
 * replays at start, and succeeds. A lost ADD (sent, never answered) fails with code 11.
 *
 * Built with the flags in shim.cflags (one place, read by install-cni and the image build).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define TIMEOUT 120.0        /* seconds for one agent round trip (shim.py TIMEOUT) */
#define CONNECT_TIMEOUT 5.0  /* seconds to get past a full listen backlog */
#define MAX_ANSWER (1u << 24)
#define CONF_NAME "sriovkit-cni.conf"
#define CONF_MAX 8192
#define JOURNAL_DIR "pending-del"
#define LOCKS_DIR "locks"
#define JOURNAL_LOCK "pending-del.lock"
#define MAX_CONTAINER_ID 200
#define IFNAMSIZ_ 16
#define ERRLEN 16384  /* room for two paths and a reason: no message is ever cut */

static const char *const VERSIONS[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define NVERSIONS 5

/* --- small buffers ------------------------------------------------------------------------ */

struct buf {
    char *data;
    size_t len, cap;
};

static void die_oom(void) {
    static const char msg[] = "{\"cniVersion\":\"1.1.0\",\"code\":999,\"msg\":\"out of memory\"}\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(1);
    _exit(1);
}

static void buf_add(struct buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) die_oom();
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_fmt(struct buf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_u32(struct buf *b, uint32_t v) {
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    buf_add(b, p, 4);
}

/* --- answers -------------------------------------------------------------------------------- */

struct answer {
    int code;
    struct buf out;
};

/* `s` as a JSON string, as shim.py's _quote writes it (bytes >= 0x80 pass through). */
static void json_quote(struct buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            buf_add(b, "\\", 1);
            buf_add(b, p, 1);
        } else if (*p < 0x20) {
            buf_fmt(b, "\\u%04x", *p);
        } else {
            buf_add(b, p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static struct answer error_answer(int code, const char *msg, const char *details) {
    struct answer a = {1, {0}};
    buf_fmt(&a.out, "{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":", code);
    json_quote(&a.out, msg);
    if (details && *details) {
        buf_str(&a.out, ",\"details\":");
        json_quote(&a.out, details);
    }
    buf_str(&a.out, "}\n");
    return a;
}

/* --- VERSION: what json.loads accepts, read as far as the answer needs ----------------------- */
/* A port of shim.py's _decode/_skip/_string/_number/_value/_object over code points. */

enum { OK = 0, INVALID = 1, UNSURE = 2 };
#define MAX_DEPTH 100
#define MAX_INT 600

struct text {
    const uint32_t *s;
    size_t n;
    int err;
};

static size_t j_skip(struct text *t, size_t i) {
    while (i < t->n && (t->s[i] == ' ' || t->s[i] == '\t' || t->s[i] == '\n' || t->s[i] == '\r'))
        i++;
    return i;
}

static int hexval(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* The string after the quote at i-1: its first 16 code points into out (*outlen may exceed 16). */
static size_t j_string(struct text *t, size_t i, uint32_t *out, size_t *outlen) {
    size_t k = 0;
    for (;;) {
        if (i >= t->n) { t->err = INVALID; return i; }
        uint32_t c = t->s[i];
        if (c == '"') break;
        if (c < 0x20) { t->err = INVALID; return i; }
        if (c == '\\') {
            uint32_t e = i + 1 < t->n ? t->s[i + 1] : 0;
            if (e == 'u') {
                uint32_t v = 0;
                for (int d = 0; d < 4; d++) {
                    int h = i + 2 + d < t->n ? hexval(t->s[i + 2 + d]) : -1;
                    if (h < 0) { t->err = INVALID; return i; }
                    v = v * 16 + (uint32_t)h;
                }
                c = v;
                i += 6;
            } else {
                switch (e) {
                case '"': c = '"'; break;
                case '\\': c = '\\'; break;
                case '/': c = '/'; break;
                case 'b': c = '\b'; break;
                case 'f': c = '\f'; break;
                case 'n': c = '\n'; break;
                case 'r': c = '\r'; break;
                case 't': c = '\t'; break;
                default: t->err = INVALID; return i;
                }
                i += 2;
            }
        } else {
            i++;
        }
        if (out && k < 16) out[k] = c;
        k++;
    }
    if (outlen) *outlen = k;
    return i + 1;
}

static size_t j_digits(struct text *t, size_t i) {
    while (i < t->n && t->s[i] >= '0' && t->s[i] <= '9') i++;
    return i;
}

static int is_digit_at(struct text *t, size_t i, uint32_t lo) {
    return i < t->n && t->s[i] >= lo && t->s[i] <= '9';
}

static size_t j_number(struct text *t, size_t i) {
    size_t start = i;
    if (t->s[i] == '-') i++;
    if (i < t->n && t->s[i] == '0') {
        i++;
    } else if (is_digit_at(t, i, '1')) {
        i = j_digits(t, i + 1);
    } else {
        t->err = INVALID;
        return i;
    }
    int is_int = 1;
    if (i < t->n && t->s[i] == '.' && is_digit_at(t, i + 1, '0')) {
        i = j_digits(t, i + 2);
        is_int = 0;
    }
    if (i < t->n && (t->s[i] == 'e' || t->s[i] == 'E')) {
        size_t j = i + 1;
        if (j < t->n && (t->s[j] == '+' || t->s[j] == '-')) j++;
        size_t end = j_digits(t, j);
        if (end > j) {
            i = end;
            is_int = 0;
        }
    }
    if (is_int && i - start > MAX_INT) t->err = UNSURE;
    return i;
}

static int starts_with(struct text *t, size_t i, const char *w) {
    size_t n = strlen(w);
    if (i + n > t->n) return 0;
    for (size_t k = 0; k < n; k++)
        if (t->s[i + k] != (unsigned char)w[k]) return 0;
    return 1;
}

static size_t j_object(struct text *t, size_t i, int depth, int *version);

static size_t j_value(struct text *t, size_t i, int depth) {
    static const char *const words[] = {"null", "true", "false", "NaN", "Infinity", "-Infinity"};
    uint32_t c = i < t->n ? t->s[i] : 0;
    if (i < t->n && c == '"') return j_string(t, i + 1, NULL, NULL);
    if (i < t->n && c == '{') return j_object(t, i + 1, depth + 1, NULL);
    if (i < t->n && c == '[') {
        if (depth + 1 > MAX_DEPTH) { t->err = UNSURE; return i; }
        i = j_skip(t, i + 1);
        if (i < t->n && t->s[i] == ']') return i + 1;
        for (;;) {
            i = j_value(t, i, depth + 1);
            if (t->err) return i;
            i = j_skip(t, i);
            if (i < t->n && t->s[i] == ']') return i + 1;
            if (i >= t->n || t->s[i] != ',') { t->err = INVALID; return i; }
            i = j_skip(t, i + 1);
        }
    }
    for (size_t w = 0; w < sizeof words / sizeof *words; w++)
        if (starts_with(t, i, words[w])) return i + strlen(words[w]);
    if (i < t->n && (c == '-' || (c >= '0' && c <= '9'))) return j_number(t, i);
    t->err = INVALID;
    return i;
}

/* *version: index into VERSIONS of the last string cniVersion member, -1 none or unsupported. */
static size_t j_object(struct text *t, size_t i, int depth, int *version) {
    if (depth > MAX_DEPTH) { t->err = UNSURE; return i; }
    i = j_skip(t, i);
    if (i < t->n && t->s[i] == '}') return i + 1;
    for (;;) {
        if (i >= t->n || t->s[i] != '"') { t->err = INVALID; return i; }
        uint32_t key[16];
        size_t klen = 0;
        i = j_string(t, i + 1, key, &klen);
        if (t->err) return i;
        i = j_skip(t, i);
        if (i >= t->n || t->s[i] != ':') { t->err = INVALID; return i; }
        i = j_skip(t, i + 1);
        int is_version = klen == 10;
        for (size_t k = 0; is_version && k < 10; k++) is_version = key[k] == (uint32_t)"cniVersion"[k];
        if (is_version && version) {
            *version = -1;  /* the last one wins, as in a dict */
            if (i < t->n && t->s[i] == '"') {
                uint32_t v[16];
                size_t vlen = 0;
                i = j_string(t, i + 1, v, &vlen);
                for (int n = 0; n < NVERSIONS && vlen == 5; n++) {
                    int same = 1;
                    for (size_t k = 0; k < 5; k++) same &= v[k] == (uint32_t)VERSIONS[n][k];
                    if (same) *version = n;
                }
            } else {
                i = j_value(t, i, depth);
            }
        } else {
            i = j_value(t, i, depth);
        }
        if (t->err) return i;
        i = j_skip(t, i);
        if (i < t->n && t->s[i] == '}') return i + 1;
        if (i >= t->n || t->s[i] != ',') { t->err = INVALID; return i; }
        i = j_skip(t, i + 1);
    }
}

/* Decoding as json.loads decodes bytes (detect_encoding, errors="surrogatepass"); -1: invalid. */
static long decode_utf8(const unsigned char *d, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = d[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) { cp = c; len = 1; }
        else if (c >= 0xC2 && c <= 0xDF) { cp = c & 0x1F; len = 2; }
        else if (c >= 0xE0 && c <= 0xEF) { cp = c & 0x0F; len = 3; }
        else if (c >= 0xF0 && c <= 0xF4) { cp = c & 0x07; len = 4; }
        else return -1;
        if (i + len > n) return -1;
        for (size_t j = 1; j < len; j++) {
            if ((d[i + j] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (d[i + j] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return -1;
        out[k++] = cp;  /* surrogates (ED A0..BF xx) pass: surrogatepass */
        i += len;
    }
    return (long)k;
}

static long decode_utf16(const unsigned char *d, size_t n, int be, uint32_t *out) {
    if (n % 2) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 2) {
        uint32_t u = be ? (uint32_t)(d[i] << 8 | d[i + 1]) : (uint32_t)(d[i + 1] << 8 | d[i]);
        if (u >= 0xD800 && u < 0xDC00 && i + 3 < n) {
            uint32_t l = be ? (uint32_t)(d[i + 2] << 8 | d[i + 3]) : (uint32_t)(d[i + 3] << 8 | d[i + 2]);
            if (l >= 0xDC00 && l < 0xE000) {
                u = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                i += 2;
            }
        }
        out[k++] = u;
    }
    return (long)k;
}

static long decode_utf32(const unsigned char *d, size_t n, int be, uint32_t *out) {
    if (n % 4) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t u = be ? (uint32_t)d[i] << 24 | (uint32_t)d[i + 1] << 16 | (uint32_t)d[i + 2] << 8 | d[i + 3]
                        : (uint32_t)d[i + 3] << 24 | (uint32_t)d[i + 2] << 16 | (uint32_t)d[i + 1] << 8 | d[i];
        if (u > 0x10FFFF) return -1;
        out[k++] = u;
    }
    return (long)k;
}

static long decode_json_bytes(const unsigned char *d, size_t n, uint32_t *out) {
    if (n >= 4 && ((d[0] == 0 && d[1] == 0 && d[2] == 0xFE && d[3] == 0xFF)))
        return decode_utf32(d + 4, n - 4, 1, out);
    if (n >= 4 && d[0] == 0xFF && d[1] == 0xFE && d[2] == 0 && d[3] == 0)
        return decode_utf32(d + 4, n - 4, 0, out);
    if (n >= 2 && d[0] == 0xFE && d[1] == 0xFF) return decode_utf16(d + 2, n - 2, 1, out);
    if (n >= 2 && d[0] == 0xFF && d[1] == 0xFE) return decode_utf16(d + 2, n - 2, 0, out);
    if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) return decode_utf8(d + 3, n - 3, out);
    if (n >= 4) {
        if (!d[0]) return d[1] ? decode_utf16(d, n, 1, out) : decode_utf32(d, n, 1, out);
        if (!d[1]) return d[2] || d[3] ? decode_utf16(d, n, 0, out) : decode_utf32(d, n, 0, out);
    } else if (n == 2) {
        if (!d[0]) return decode_utf16(d, n, 1, out);
        if (!d[1]) return decode_utf16(d, n, 0, out);
    }
    return decode_utf8(d, n, out);
}

static void version_of(int index, struct buf *b) {
    buf_fmt(b, "{\"cniVersion\":\"%s\",\"supportedVersions\":[", VERSIONS[index]);
    for (int n = 0; n < NVERSIONS; n++) buf_fmt(b, "%s\"%s\"", n ? "," : "", VERSIONS[n]);
    buf_str(b, "]}\n");
}

/* VERSION's stdout into b; 0 when only the full plugin can tell (deep nesting, huge ints). */
static int version_answer(const unsigned char *stdin_data, size_t n, struct buf *b) {
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    if (!cps) die_oom();
    long count = decode_json_bytes(stdin_data, n, cps);
    int version = -1;
    if (count >= 0) {
        struct text t = {cps, (size_t)count, OK};
        size_t i = j_skip(&t, 0);
        if (i < t.n && t.s[i] == '{') {
            size_t end = j_object(&t, i + 1, 1, &version);
            if (t.err == UNSURE) { free(cps); return 0; }
            if (t.err || j_skip(&t, end) != t.n) version = -1;
        }
    }
    free(cps);
    version_of(version < 0 ? NVERSIONS - 1 : version, b);
    return 1;
}

/* --- config --------------------------------------------------------------------------------- */

struct conf {
    char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char state_dir[PATH_MAX];
    char root[PATH_MAX];
    char fallback[PATH_MAX];
    char path[PATH_MAX];
};

/* 0 and the config in c, or -1 and why in err. */
static int read_conf(struct conf *c, char *err, size_t errlen) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(err, errlen, "cannot read /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) {
        snprintf(err, errlen, "/proc/self/exe is %s, not an absolute path", exe);
        return -1;
    }
    *slash = 0;
    if (snprintf(c->path, sizeof c->path, "%s/%s", exe, CONF_NAME) >= (int)sizeof c->path) {
        snprintf(err, errlen, "the path of %s is too long", CONF_NAME);
        return -1;
    }
    int fd = open(c->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", c->path, errno == ELOOP ? "is a symlink; refusing" : strerror(errno));
        return -1;
    }
    struct stat st;
    char data[CONF_MAX + 1];
    ssize_t len = -1;
    if (fstat(fd, &st) == 0) len = read(fd, data, CONF_MAX + 1);
    int saved = errno;
    close(fd);
    if (len < 0) {
        snprintf(err, errlen, "%s: %s", c->path, strerror(saved));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022)) {
        snprintf(err, errlen, "%s must be a regular file owned by root and writable by root only; refusing", c->path);
        return -1;
    }
    if (len > CONF_MAX) {
        snprintf(err, errlen, "%s is larger than %d bytes", c->path, CONF_MAX);
        return -1;
    }
    data[len] = 0;
    if ((size_t)len != strlen(data)) {
        snprintf(err, errlen, "%s holds a NUL byte", c->path);
        return -1;
    }
    int seen[4] = {0, 0, 0, 0};
    static const char *const keys[] = {"socket", "state_dir", "root", "fallback"};
    char *dest[] = {c->socket, c->state_dir, c->root, c->fallback};
    size_t sizes[] = {sizeof c->socket, sizeof c->state_dir, sizeof c->root, sizeof c->fallback};
    int lineno = 0;
    for (char *line = data; *line;) {
        char *end = strchr(line, '\n');
        if (!end) {
            snprintf(err, errlen, "%s: the last line has no newline", c->path);
            return -1;
        }
        *end = 0;
        lineno++;
        if (*line && *line != '#') {
            char *eq = strchr(line, '=');
            int k = -1;
            for (int i = 0; eq && i < 4; i++)
                if ((size_t)(eq - line) == strlen(keys[i]) && !strncmp(line, keys[i], (size_t)(eq - line))) k = i;
            if (k < 0) {
                snprintf(err, errlen, "%s line %d: not one of socket=, state_dir=, root=, fallback=", c->path, lineno);
                return -1;
            }
            const char *value = eq + 1;
            if (seen[k]++) {
                snprintf(err, errlen, "%s line %d: %s given twice", c->path, lineno, keys[k]);
                return -1;
            }
            if (value[0] != '/' || strlen(value) >= sizes[k]) {
                snprintf(err, errlen, "%s line %d: %s must be an absolute path shorter than %zu bytes", c->path, lineno, keys[k], sizes[k]);
                return -1;
            }
            for (const char *p = value; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                    snprintf(err, errlen, "%s line %d: %s holds a control character", c->path, lineno, keys[k]);
                    return -1;
                }
            strcpy(dest[k], value);
        }
        line = end + 1;
    }
    for (int i = 0; i < 3; i++)
        if (!seen[i]) {
            snprintf(err, errlen, "%s: %s= is missing", c->path, keys[i]);
            return -1;
        }
    return 0;
}

/* --- the agent ------------------------------------------------------------------------------ */

enum { AGENT_OK, AGENT_UNREACHABLE, AGENT_LOST };

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int wait_fd(int fd, short events, double until) {
    for (;;) {
        double left = until - now_mono();
        if (left <= 0) return -2;
        struct pollfd p = {fd, events, 0};
        int ms = (int)(left * 1000) + 1;
        int r = poll(&p, 1, ms);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* A connected socket, or -1 and why in err. */
static int agent_connect(const char *path, double until, char *err, size_t errlen) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "agent socket %s: %s", path, strerror(errno));
        return -1;
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    double deadline = now_mono() + CONNECT_TIMEOUT;
    if (deadline > until) deadline = until;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
        if (errno == EAGAIN) {
            /* A unix socket's full listen backlog says EAGAIN to a non-blocking connect. */
            if (now_mono() > deadline) {
                snprintf(err, errlen, "agent socket %s: backlog full", path);
                break;
            }
            struct timespec pause = {0, 5000000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (errno == EINTR) continue;
        snprintf(err, errlen, "agent socket %s: %s", path, strerror(errno));
        break;
    }
    close(fd);
    return -1;
}

static int recv_exact(int fd, char *p, size_t n, double until, char *err, size_t errlen) {
    while (n > 0) {
        int w = wait_fd(fd, POLLIN, until);
        if (w == -2) {
            snprintf(err, errlen, "the agent did not answer within %g s", TIMEOUT);
            return -1;
        }
        ssize_t r = w < 0 ? -1 : recv(fd, p, n > 65536 ? 65536 : n, 0);
        if (r == 0) {
            snprintf(err, errlen, "the agent closed the connection before answering");
            return -1;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            snprintf(err, errlen, "lost the agent: %s", strerror(errno));
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Send the request on the connected fd; AGENT_OK and the answer, or AGENT_LOST and why. */
static int agent_exchange(int fd, const struct buf *req, double until, struct answer *a, char *err, size_t errlen) {
    size_t off = 0;
    while (off < req->len) {
        int w = wait_fd(fd, POLLOUT, until);
        if (w == -2) {
            snprintf(err, errlen, "the agent did not answer within %g s", TIMEOUT);
            return AGENT_LOST;
        }
        ssize_t r = w < 0 ? -1 : send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            snprintf(err, errlen, "lost the agent: %s", strerror(errno));
            return AGENT_LOST;
        }
        off += (size_t)r;
    }
    /* Half-close: the agent reads to EOF; it tells "gone" from this by POLLHUP. */
    if (shutdown(fd, SHUT_WR) < 0) {
        snprintf(err, errlen, "lost the agent: %s", strerror(errno));
        return AGENT_LOST;
    }
    unsigned char head[12];
    if (recv_exact(fd, (char *)head, 12, until, err, errlen) < 0) return AGENT_LOST;
    if (memcmp(head, "SKR1", 4)) {
        snprintf(err, errlen, "the agent answered with an unknown frame");
        return AGENT_LOST;
    }
    uint32_t code = (uint32_t)head[4] << 24 | (uint32_t)head[5] << 16 | (uint32_t)head[6] << 8 | head[7];
    uint32_t size = (uint32_t)head[8] << 24 | (uint32_t)head[9] << 16 | (uint32_t)head[10] << 8 | head[11];
    if (size > MAX_ANSWER) {
        snprintf(err, errlen, "the agent's answer is too large (%u bytes)", size);
        return AGENT_LOST;
    }
    char *body = malloc((size_t)size + 1);
    if (!body) die_oom();
    if (recv_exact(fd, body, size, until, err, errlen) < 0) {
        free(body);
        return AGENT_LOST;
    }
    a->code = (int)code;
    a->out.len = 0;
    buf_add(&a->out, body, size);
    free(body);
    return AGENT_OK;
}

/* --- the pending-DEL journal ---------------------------------------------------------------- */

static int valid_container_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MAX_CONTAINER_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return 0;
    }
    return 1;
}

static int valid_ifname(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= IFNAMSIZ_ || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (size_t i = 0; i < n; i++)
        if (strchr("/: \t\n\r\v\f", s[i]) || (s[i] >= 0x1c && s[i] <= 0x1f)) return 0;
    return 1;
}

/* `<container id>@<ifname %-quoted as urllib.parse.quote(safe="-_.")>.del` */
static void journal_name(const char *cid, const char *ifname, char *out, size_t outlen) {
    struct buf b = {0};
    buf_str(&b, cid);
    buf_add(&b, "@", 1);
    for (const unsigned char *p = (const unsigned char *)ifname; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            buf_add(&b, p, 1);
        else
            buf_fmt(&b, "%%%02X", *p);
    }
    buf_str(&b, ".del");
    snprintf(out, outlen, "%s", b.data);
    free(b.data);
}

/* A directory under dfd (or the path itself when dfd < 0), created 0700 if missing. */
static int open_dir(int dfd, const char *name) {
    int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = dfd < 0 ? open(name, flags) : openat(dfd, name, flags);
    if (fd >= 0 || errno != ENOENT) return fd;
    if (dfd < 0) {  /* the state directory: its parents as `mkdir -p` would make them */
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", name);
        for (char *p = path + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(path, 0755);
                *p = '/';
            }
        mkdir(name, 0700);
        fd = open(name, flags);
    } else {
        mkdirat(dfd, name, 0700);
        fd = openat(dfd, name, flags);
        if (fd >= 0) fsync(dfd);
    }
    if (fd >= 0) fchmod(fd, 0700);
    return fd;
}

struct journal {
    int root, locks, dir, lock;
};

static void journal_close(struct journal *j) {
    if (j->lock >= 0) close(j->lock);  /* drops the shared flock */
    if (j->dir >= 0) close(j->dir);
    if (j->locks >= 0) close(j->locks);
    if (j->root >= 0) close(j->root);
    j->root = j->locks = j->dir = j->lock = -1;
}

/* Open the journal and hold its shared lock (the agent takes it exclusively to replay). */
static int journal_open(const struct conf *c, struct journal *j, char *err, size_t errlen) {
    j->root = j->locks = j->dir = j->lock = -1;
    const char *what = c->state_dir;
    j->root = open_dir(-1, c->state_dir);
    if (j->root >= 0) { what = LOCKS_DIR; j->locks = open_dir(j->root, LOCKS_DIR); }
    if (j->locks >= 0) { what = JOURNAL_DIR; j->dir = open_dir(j->root, JOURNAL_DIR); }
    if (j->dir >= 0) {
        what = JOURNAL_LOCK;
        j->lock = openat(j->locks, JOURNAL_LOCK, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (j->lock >= 0 && flock(j->lock, LOCK_SH) == 0) return 0;
    snprintf(err, errlen, "state directory %s: %s: %s", c->state_dir, what,
             errno == ELOOP || errno == ENOTDIR ? "a symlink or not a directory; refusing" : strerror(errno));
    journal_close(j);
    return -1;
}

/* Write the request durably as `name` in the journal: temp, fsync, rename, fsync dir. */
static int journal_write(struct journal *j, const char *name, const struct buf *req, char *err, size_t errlen) {
    struct stat st;
    if (fstatat(j->dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "pending DEL %s is not a regular file; refusing", name);
        return -1;
    }
    char tmp[NAME_MAX + 1];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(tmp, sizeof tmp, ".%.200s.%d.%lld%09ld.tmp", name, (int)getpid(), (long long)ts.tv_sec, ts.tv_nsec);
    int fd = openat(j->dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write pending DEL %s: %s", name, strerror(errno));
        return -1;
    }
    flock(fd, LOCK_EX);  /* the state store's sweep tells a live writer's temp by its lock */
    int ok = fchmod(fd, 0600) == 0;
    for (size_t off = 0; ok && off < req->len;) {
        ssize_t r = write(fd, req->data + off, req->len - off);
        if (r < 0 && errno == EINTR) continue;
        ok = r > 0;
        off += ok ? (size_t)r : 0;
    }
    ok = ok && fsync(fd) == 0 && renameat(j->dir, tmp, j->dir, name) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        unlinkat(j->dir, tmp, 0);
        snprintf(err, errlen, "cannot write pending DEL %s: %s", name, strerror(saved));
        return -1;
    }
    fsync(j->dir);
    return 0;
}

/* --- the invocation ------------------------------------------------------------------------- */

static int forwarded(const char *entry) {
    return !strncmp(entry, "CNI_", 4) || !strncmp(entry, "SRIOVKIT_", 9);
}

static int has_key(const char *entry, const char *key) {
    size_t n = strlen(key);
    return !strncmp(entry, key, n) && entry[n] == '=';
}

static const char *getenv_exact(const char *key) {
    for (char **e = environ; *e; e++)
        if (has_key(*e, key)) return *e + strlen(key) + 1;
    return NULL;
}

/* The request frame: the caller's CNI_* and SRIOVKIT_* entries, the baked settings over them,
   and (deadline non-NULL) SRIOVKIT_DEADLINE. */
static void encode_request(const struct conf *c, const char *deadline, const struct buf *in, struct buf *req) {
    struct buf env = {0};
    for (char **e = environ; *e; e++) {
        if (!forwarded(*e) || !strchr(*e, '=') || has_key(*e, "SRIOVKIT_STATE_DIR") ||
            has_key(*e, "SRIOVKIT_ROOT") || has_key(*e, "SRIOVKIT_AGENT_SOCKET") ||
            has_key(*e, "SRIOVKIT_DEADLINE"))
            continue;
        if (env.len) buf_add(&env, "", 1);
        buf_str(&env, *e);
    }
    if (env.len) buf_add(&env, "", 1);
    buf_fmt(&env, "SRIOVKIT_STATE_DIR=%s", c->state_dir);
    buf_add(&env, "", 1);
    buf_fmt(&env, "SRIOVKIT_ROOT=%s", c->root);
    if (deadline) {
        buf_add(&env, "", 1);
        buf_fmt(&env, "SRIOVKIT_DEADLINE=%s", deadline);
    }
    req->len = 0;
    buf_add(req, "SKC1", 4);
    put_u32(req, (uint32_t)env.len);
    put_u32(req, (uint32_t)in->len);
    buf_add(req, env.data, env.len);
    buf_add(req, in->data ? in->data : "", in->len);
    free(env.data);
}

/* exec `<fallback> -I -m sriovkit.cni.shim` with stdin put back; returns only if that fails. */
static void exec_fallback(const struct conf *c, const struct buf *in) {
    int fd = memfd_create("sriovkit-cni-stdin", MFD_CLOEXEC);
    if (fd < 0) return;
    for (size_t off = 0; off < in->len;) {
        ssize_t r = write(fd, in->data + off, in->len - off);
        if (r <= 0) { close(fd); return; }
        off += (size_t)r;
    }
    if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) { close(fd); return; }
    close(fd);
    setenv("SRIOVKIT_STATE_DIR", c->state_dir, 1);
    setenv("SRIOVKIT_ROOT", c->root, 1);
    setenv("SRIOVKIT_AGENT", "off", 1);
    unsetenv("SRIOVKIT_AGENT_SOCKET");
    char *argv[] = {(char *)c->fallback, "-I", "-m", "sriovkit.cni.shim", NULL};
    execv(c->fallback, argv);
}

/* No agent and no fallback: the rules of DESIGN.md (shim.py `no_agent` says the same). */
static struct answer no_agent(const struct conf *c, const char *command, const struct buf *in, const char *why) {
    struct answer a = {0, {0}};
    char msg[512];
    snprintf(msg, sizeof msg, "sriovkit agent at %s unavailable", c->socket);
    if (!strcmp(command, "VERSION")) {
        version_of(NVERSIONS - 1, &a.out);  /* only a config the scanner was unsure of gets here */
        return a;
    }
    if (!strcmp(command, "STATUS")) return error_answer(50, msg, why);
    if (strcmp(command, "DEL")) return error_answer(11, msg, why);
    const char *cid = getenv_exact("CNI_CONTAINERID");
    const char *ifname = getenv_exact("CNI_IFNAME");
    if (!cid || !valid_container_id(cid))
        return error_answer(4, "cannot journal DEL: CNI_CONTAINERID is not a valid container id", why);
    if (!ifname || !valid_ifname(ifname))
        return error_answer(4, "cannot journal DEL: CNI_IFNAME is not a valid interface name", why);
    char err[ERRLEN];
    struct journal j;
    if (journal_open(c, &j, err, sizeof err) < 0) return error_answer(11, msg, err);
    /* Under the shared lock, once more: an agent that started meanwhile replays the journal
       only after taking the lock exclusively, so it either sees this entry or serves us. */
    double until = now_mono() + TIMEOUT;
    char why2[ERRLEN];
    int fd = agent_connect(c->socket, until, why2, sizeof why2);
    if (fd >= 0) {
        journal_close(&j);
        struct buf req = {0};
        char deadline[64];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(deadline, sizeof deadline, "%.6f", (double)ts.tv_sec + ts.tv_nsec / 1e9 + TIMEOUT);
        encode_request(c, deadline, in, &req);
        int r = agent_exchange(fd, &req, until, &a, why2, sizeof why2);
        close(fd);
        free(req.data);
        if (r == AGENT_OK) return a;
        if (journal_open(c, &j, err, sizeof err) < 0) return error_answer(11, msg, err);
    }
    char name[NAME_MAX + 1];
    journal_name(cid, ifname, name, sizeof name);
    struct buf req = {0};
    encode_request(c, NULL, in, &req);
    int w = journal_write(&j, name, &req, err, sizeof err);
    journal_close(&j);
    free(req.data);
    if (w < 0) return error_answer(11, msg, err);
    a.code = 0;
    a.out.len = 0;
    return a;
}

static struct answer without_agent(const struct conf *c, const char *command, const struct buf *in, const char *why) {
    if (c->fallback[0]) exec_fallback(c, in);
    return no_agent(c, command, in, why);
}

static struct answer run(const struct buf *in) {
    const char *command = getenv_exact("CNI_COMMAND");
    if (!command) command = "";
    struct answer a = {0, {0}};
    if (!strcmp(command, "VERSION") && version_answer((const unsigned char *)(in->data ? in->data : ""), in->len, &a.out))
        return a;
    struct conf c;
    char err[ERRLEN];
    memset(&c, 0, sizeof c);
    if (read_conf(&c, err, sizeof err) < 0) return error_answer(999, "sriovkit CNI shim has no usable config", err);
    const char *agent = getenv_exact("SRIOVKIT_AGENT");
    if (agent && !strcmp(agent, "off")) return without_agent(&c, command, in, "SRIOVKIT_AGENT=off");
    double until = now_mono() + TIMEOUT;
    int fd = agent_connect(c.socket, until, err, sizeof err);
    if (fd < 0) return without_agent(&c, command, in, err);
    /* The deadline is when this shim stops waiting; the agent does not start an ADD after it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char deadline[64];
    snprintf(deadline, sizeof deadline, "%.6f", (double)ts.tv_sec + ts.tv_nsec / 1e9 + TIMEOUT);
    struct buf req = {0};
    encode_request(&c, deadline, in, &req);
    int r = agent_exchange(fd, &req, until, &a, err, sizeof err);
    close(fd);
    free(req.data);
    if (r == AGENT_OK) return a;
    if (!strcmp(command, "ADD")) return error_answer(11, "sriovkit agent failed during ADD; try again", err);
    return without_agent(&c, command, in, err);
}

int main(void) {
    struct buf in = {0};
    char chunk[65536];
    for (;;) {
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r == 0) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            struct answer a = error_answer(999, "internal error", "cannot read stdin");
            if (write(1, a.out.data, a.out.len) < 0) return 1;
            return 1;
        }
        buf_add(&in, chunk, (size_t)r);
    }
    struct answer a = run(&in);
    for (size_t off = 0; off < a.out.len;) {
        ssize_t r = write(1, a.out.data + off, a.out.len - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return a.code ? a.code : 1;
        off += (size_t)r;
    }
    return a.code;
}
