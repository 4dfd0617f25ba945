/* Thread-local error state: every failing public call records a message here. */
#include "bnb-impl.h"

#include <stdio.h>

static _Thread_local char g_msg[1024];
static _Thread_local bnb_status g_status = BNB_OK;

static void set_msg(bnb_status s, const char *fmt, va_list ap) {
    g_status = s;
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
}

bnb_status bnb_fail(bnb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_msg(s, fmt, ap);
    va_end(ap);
    return s;
}

void *bnb_fail_null(bnb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_msg(s, fmt, ap);
    va_end(ap);
    return NULL;
}

const char *bnb_last_error(void) { return g_msg; }
bnb_status bnb_last_status(void) { return g_status; }

void bnb_clear_error(void) {
    g_msg[0] = 0;
    g_status = BNB_OK;
}

const char *bnb_status_name(bnb_status s) {
    switch (s) {
    case BNB_OK: return "BNB_OK";
    case BNB_ERR_INVALID_ARG: return "BNB_ERR_INVALID_ARG";
    case BNB_ERR_SHAPE: return "BNB_ERR_SHAPE";
    case BNB_ERR_TYPE: return "BNB_ERR_TYPE";
    case BNB_ERR_OOM: return "BNB_ERR_OOM";
    case BNB_ERR_BACKEND: return "BNB_ERR_BACKEND";
    case BNB_ERR_NO_DEVICE: return "BNB_ERR_NO_DEVICE";
    case BNB_ERR_UNSUPPORTED: return "BNB_ERR_UNSUPPORTED";
    case BNB_ERR_GRAPH: return "BNB_ERR_GRAPH";
    case BNB_ERR_IO: return "BNB_ERR_IO";
    case BNB_ERR_NUMERIC: return "BNB_ERR_NUMERIC";
    }
    return "BNB_ERR_UNKNOWN";
}

const char *bnb_shape_str(const bnb_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    int nd = bnb_n_dims(t);
    size_t off = 0;
    for (int i = 0; i < nd && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? "x%lld" : "%lld", (long long)t->ne[i]);
    return buf;
}

bool bnb_check_src(const char *op, const bnb_tensor *t, const char *what) {
    if (!t) {
        bnb_fail(BNB_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
        return false;
    }
    if ((unsigned)t->type >= BNB_TYPE_COUNT) {
        bnb_fail(BNB_ERR_TYPE, "%s: %s has an invalid type %d", op, what, (int)t->type);
        return false;
    }
    return true;
}
