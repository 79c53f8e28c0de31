/* The token-trie walk in C: the one hot loop of a state's first mask.
 *
 * walk(label, child_lo, child_hi, term_lo, term_n, ids, level_off, parent, start, table,
 *      refill, out_ids, out_ends, dense_fraction) -> count
 *
 * The trie is flattened level by level (see grammar.index.TokenTrie): the nodes of depth d
 * are [level_off[d], level_off[d + 1]); node i has an edge byte label[i] (uint8), children
 * [child_lo[i], child_hi[i]) (global numbers), its parent's position within the level
 * above (parent[i]; 0 at depth 0) and term_n[i] tokens ending at it, whose ids are
 * ids[term_lo[i] ...] (int64).  All int32 except label and ids.
 * table is the automaton's transition table, int32, 256 entries per state: 0 is the dead
 * state (its row is all 0) and -1 marks a row not computed yet.  On a -1 the walk calls
 * refill(state), which computes that state's row and returns the (possibly reallocated)
 * table.
 *
 * The walk from `start` is dense (every node of a level) while more than dense_fraction
 * of a level's nodes are alive, then sparse (the live nodes' children only).  It writes
 * every accepted token id and its end state to out_ids / out_ends (int64, room for every
 * token plus one) and returns how many it wrote.  Only the buffer protocol is used, so the
 * module builds without numpy's headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A run of sibling nodes [lo, hi) entered in `state`. */
typedef struct {
    int32_t lo;
    int32_t hi;
    int32_t state;
} Range;

/* What next_state() and emit() share with the walk; the table is re-fetched after every
 * refill. */
typedef struct {
    const int32_t *t_lo, *t_n;
    const int64_t *tok;
    Py_ssize_t n_tok;
    int64_t *o_ids, *o_ends;
    Py_ssize_t cap, n_out;
    PyObject *refill;
    Py_buffer tview;
    int have_table;
    const int32_t *T;
    Py_ssize_t n_entries;
} Walk;

static int
get_table(Walk *w, PyObject *obj)
{
    Py_buffer *view = &w->tview;
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 4 || view->format == NULL
        || (strcmp(view->format, "i") != 0 && strcmp(view->format, "=i") != 0
            && strcmp(view->format, "<i") != 0 && strcmp(view->format, "l") != 0)
        || view->len % (256 * 4) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "table must be a C-contiguous int32 array of 256-entry rows");
        return -1;
    }
    w->have_table = 1;
    w->T = (const int32_t *)view->buf;
    w->n_entries = view->len / 4;
    return 0;
}

/* The transition of state s on byte b; -2 on error (a Python exception is set). */
static inline int32_t
next_state(Walk *w, int32_t s, uint8_t b)
{
    int32_t nx = w->T[(Py_ssize_t)s * 256 + b];
    if (nx < 0) {
        /* first visit of s: let the automaton compute its row (it may grow the table) */
        PyObject *fresh = PyObject_CallFunction(w->refill, "i", s);
        if (fresh == NULL)
            return -2;
        PyBuffer_Release(&w->tview);
        w->have_table = 0;
        int rc = get_table(w, fresh);
        Py_DECREF(fresh);   /* the view keeps the array alive */
        if (rc < 0)
            return -2;
        nx = w->T[(Py_ssize_t)s * 256 + b];
        if (nx < 0) {
            PyErr_Format(PyExc_RuntimeError, "refill(%d) left the row incomplete", s);
            return -2;
        }
    }
    if ((Py_ssize_t)nx * 256 >= w->n_entries) {
        PyErr_SetString(PyExc_RuntimeError, "transition to a state outside the table");
        return -2;
    }
    return nx;
}

static inline int
emit(Walk *w, int32_t node, int32_t state)
{
    int32_t k = w->t_n[node];
    if (k > 0) {
        int32_t lo = w->t_lo[node];
        if (lo < 0 || (Py_ssize_t)lo + k > w->n_tok || w->n_out + k > w->cap) {
            PyErr_SetString(PyExc_ValueError, "token range out of bounds");
            return -1;
        }
        for (int32_t j = 0; j < k; j++) {
            w->o_ids[w->n_out] = w->tok[lo + j];
            w->o_ends[w->n_out] = state;
            w->n_out++;
        }
    }
    return 0;
}

static int
check(Py_buffer *b, Py_ssize_t itemsize, const char *name)
{
    if (b->len % itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s: item size must be %zd", name, itemsize);
        return -1;
    }
    return 0;
}

static PyObject *
native_walk(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer label, clo, chi, tlo, tn, ids, loff, par, out_ids, out_ends;
    int start;
    double dense_fraction;
    PyObject *table_obj, *refill;
    PyObject *result = NULL;
    Range *cur = NULL, *nxt = NULL;
    int32_t *st_prev = NULL, *st_cur = NULL;
    Walk w;
    memset(&w, 0, sizeof w);

    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*iOOw*w*d", &label, &clo, &chi, &tlo, &tn,
                          &ids, &loff, &par, &start, &table_obj, &refill, &out_ids, &out_ends,
                          &dense_fraction))
        return NULL;
    if (check(&label, 1, "label") || check(&clo, 4, "child_lo") || check(&chi, 4, "child_hi")
        || check(&tlo, 4, "term_lo") || check(&tn, 4, "term_n") || check(&ids, 8, "ids")
        || check(&loff, 4, "level_off") || check(&par, 4, "parent")
        || check(&out_ids, 8, "out_ids") || check(&out_ends, 8, "out_ends"))
        goto done;
    Py_ssize_t n_nodes = label.len, n_levels = loff.len / 4 - 1;
    const int32_t *off = (const int32_t *)loff.buf, *parent = (const int32_t *)par.buf;
    if (clo.len / 4 != n_nodes || chi.len / 4 != n_nodes || tlo.len / 4 != n_nodes
        || tn.len / 4 != n_nodes || par.len / 4 != n_nodes || n_levels < 1 || off[0] != 0
        || off[n_levels] != n_nodes
        || out_ids.len != out_ends.len || out_ids.len <= ids.len) {
        PyErr_SetString(PyExc_ValueError, "inconsistent trie arrays");
        goto done;
    }
    Py_ssize_t width = 0;
    for (Py_ssize_t d = 0; d < n_levels; d++) {
        if (off[d + 1] < off[d]) {
            PyErr_SetString(PyExc_ValueError, "level offsets must not decrease");
            goto done;
        }
        if (off[d + 1] - off[d] > width)
            width = off[d + 1] - off[d];
    }
    w.t_lo = (const int32_t *)tlo.buf;
    w.t_n = (const int32_t *)tn.buf;
    w.tok = (const int64_t *)ids.buf;
    w.n_tok = ids.len / 8;
    w.o_ids = (int64_t *)out_ids.buf;
    w.o_ends = (int64_t *)out_ends.buf;
    w.cap = out_ids.len / 8;
    w.refill = refill;
    if (get_table(&w, table_obj) < 0)
        goto done;
    if (start < 0 || (Py_ssize_t)start * 256 >= w.n_entries) {
        PyErr_SetString(PyExc_ValueError, "start state out of range");
        goto done;
    }
    cur = PyMem_Malloc(sizeof(Range) * (size_t)(width + 1));
    nxt = PyMem_Malloc(sizeof(Range) * (size_t)(width + 1));
    st_prev = PyMem_Malloc(sizeof(int32_t) * (size_t)(width + 1));
    st_cur = PyMem_Malloc(sizeof(int32_t) * (size_t)(width + 1));
    if (cur == NULL || nxt == NULL || st_prev == NULL || st_cur == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const int32_t *t_n = w.t_n, *t_lo = w.t_lo;
    const int32_t *c_lo = (const int32_t *)clo.buf, *c_hi = (const int32_t *)chi.buf;
    const int64_t *tok = w.tok;
    const uint8_t *lab = (const uint8_t *)label.buf;
    int64_t *o_ids = w.o_ids, *o_ends = w.o_ends;
    Py_ssize_t n_out = 0, n_cur = 0, d = 0;

/* The tokens ending at node i, now in state nx (0: dead): written unconditionally (the
 * output has a spare entry) and kept by advancing the count; several ids with one
 * spelling take the slow path. */
#define EMIT(i, nx)                                                                 \
    do {                                                                            \
        int32_t k_ = t_n[i], lo_ = t_lo[i];                                         \
        if ((uint32_t)k_ <= 1 && (uint32_t)lo_ < (uint32_t)w.n_tok && n_out < w.cap) { \
            o_ids[n_out] = tok[lo_];                                                \
            o_ends[n_out] = (nx);                                                   \
            n_out += k_ & ((nx) != 0);                                              \
        } else if (nx) {                                                            \
            w.n_out = n_out;                                                        \
            if (emit(&w, (i), (nx)) < 0)                                            \
                goto done;                                                          \
            n_out = w.n_out;                                                        \
        }                                                                           \
    } while (0)

/* The children of node i, entered in state nx, as a run of the next level: written
 * unconditionally and kept when alive with children. */
#define PUSH_RUN(runs, n_runs, i, nx)                                               \
    do {                                                                            \
        int32_t a_ = c_lo[i], b_ = c_hi[i];                                         \
        if (a_ < 0 || b_ > n_nodes || (n_runs) >= width) {                          \
            PyErr_SetString(PyExc_ValueError, "child run out of range");            \
            goto done;                                                              \
        }                                                                           \
        (runs)[n_runs].lo = a_;                                                     \
        (runs)[n_runs].hi = b_;                                                     \
        (runs)[n_runs].state = (nx);                                                \
        (n_runs) += ((nx) != 0) & (b_ > a_);                                        \
    } while (0)

    /* Dense phase: every node of level d gets a state in st_cur (0 once pruned) from its
     * parent's, a sequential pass with no data-dependent branch; it lasts while more than
     * dense_fraction of a level's nodes are alive. */
    st_prev[0] = start;   /* level 0: every node's parent is the root, at position 0 */
    for (d = 0; d < n_levels; d++) {
        int32_t base = off[d], n = off[d + 1] - off[d];
        uint32_t prev_n = d ? (uint32_t)(off[d] - off[d - 1]) : 1;
        Py_ssize_t alive = 0;
        const int32_t *T = w.T;
        Py_ssize_t n_states = w.n_entries / 256;
        for (int32_t j = 0; j < n; j++) {
            int32_t i = base + j;
            uint32_t p = (uint32_t)parent[i];
            if (p >= prev_n) {
                PyErr_SetString(PyExc_ValueError, "parent out of range");
                goto done;
            }
            int32_t ps = st_prev[p];   /* a pruned parent is state 0, whose row is all 0 */
            int32_t nx = T[(Py_ssize_t)ps * 256 + lab[i]];
            if (nx < 0 || nx >= n_states) {
                nx = next_state(&w, ps, lab[i]);
                if (nx == -2)
                    goto done;
                T = w.T;
                n_states = w.n_entries / 256;
            }
            EMIT(i, nx);
            st_cur[j] = nx;
            alive += nx != 0;
        }
        int32_t *t = st_prev;
        st_prev = st_cur;
        st_cur = t;
        if ((double)alive <= dense_fraction * (double)n) {
            /* few alive: hand the live nodes' children over as runs */
            for (int32_t j = 0; j < n; j++)
                PUSH_RUN(cur, n_cur, base + j, st_prev[j]);
            d++;
            break;
        }
    }

    /* Sparse phase, level by level over a frontier of sibling runs: only live nodes'
     * children are visited; runs too are written unconditionally and kept by count. */
    for (; d < n_levels && n_cur; d++) {
        Py_ssize_t n_nxt = 0;
        for (Py_ssize_t r = 0; r < n_cur; r++) {
            int32_t s = cur[r].state, hi = cur[r].hi;
            const int32_t *row = w.T + (Py_ssize_t)s * 256;
            Py_ssize_t n_states = w.n_entries / 256;
            for (int32_t i = cur[r].lo; i < hi; i++) {
                int32_t nx = row[lab[i]];
                if (nx < 0 || nx >= n_states) {
                    nx = next_state(&w, s, lab[i]);
                    if (nx == -2)
                        goto done;
                    row = w.T + (Py_ssize_t)s * 256;
                    n_states = w.n_entries / 256;
                }
                EMIT(i, nx);
                PUSH_RUN(nxt, n_nxt, i, nx);
            }
        }
        Range *t = cur;
        cur = nxt;
        nxt = t;
        n_cur = n_nxt;
    }
#undef EMIT
#undef PUSH_RUN
    result = PyLong_FromSsize_t(n_out);

done:
    PyMem_Free(cur);
    PyMem_Free(nxt);
    PyMem_Free(st_prev);
    PyMem_Free(st_cur);
    if (w.have_table)
        PyBuffer_Release(&w.tview);
    PyBuffer_Release(&label);
    PyBuffer_Release(&clo);
    PyBuffer_Release(&chi);
    PyBuffer_Release(&tlo);
    PyBuffer_Release(&tn);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&loff);
    PyBuffer_Release(&par);
    PyBuffer_Release(&out_ids);
    PyBuffer_Release(&out_ends);
    return result;
}

/* ------------------------------------------------------------------------------------
 * fingerprint(value, key) -> 16 bytes, or None
 *
 * A cache key for a JSON-like value: keyed SipHash-1-3 with 128-bit output over a
 * prefix-free encoding of the value (a type tag, then the contents; containers give their
 * length first, dicts their items in order), so different values give different byte
 * streams and, under a secret 16-byte key, different fingerprints except with negligible
 * probability, even for values chosen to collide.  Takes dict, list, tuple, str, int
 * (64-bit), float, bool and None, exact types only; anything else, or nesting deeper than
 * 1000 levels, gives None (the caller falls back to a serialisation).  No Python code
 * runs during the traversal, so the borrowed references stay valid.
 */
#define SIP_BUF 4096   /* bytes are gathered here and compressed 8 at a time when full */

typedef struct {
    uint64_t v0, v1, v2, v3;
    uint64_t len;      /* bytes compressed so far */
    size_t n;          /* bytes waiting in buf */
    unsigned char buf[SIP_BUF];
} Sip;

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                        \
    do {                                                                                \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                       \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                          \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                          \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                       \
    } while (0)

static inline uint64_t
load_le64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t m;
    memcpy(&m, p, 8);   /* one unaligned load */
    return m;
#else
    uint64_t m = 0;
    for (int b = 0; b < 8; b++)   /* a fixed byte order on any host */
        m |= (uint64_t)p[b] << (8 * b);
    return m;
#endif
}

/* Compress the whole 8-byte words waiting in the buffer (one SipRound each: c = 1). */
static void
sip_compress(Sip *s)
{
    uint64_t v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3;
    size_t words = s->n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t m = load_le64(s->buf + 8 * i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    s->v0 = v0; s->v1 = v1; s->v2 = v2; s->v3 = v3;
    s->len += 8 * words;
    memmove(s->buf, s->buf + 8 * words, s->n - 8 * words);
    s->n -= 8 * words;
}

static void
sip_bytes_long(Sip *s, const unsigned char *p, size_t n)
{
    while (n) {
        size_t take = SIP_BUF - s->n < n ? SIP_BUF - s->n : n;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        n -= take;
        if (s->n == SIP_BUF)
            sip_compress(s);
    }
}

/* A type tag and a number: 8 bytes for int and float payloads, a varint (7 bits a byte,
 * high bit = more) for lengths and booleans, which keeps the common short items short. */
static inline void
sip_tag(Sip *s, unsigned char tag, uint64_t x, int fixed)
{
    if (SIP_BUF - s->n < 11)
        sip_compress(s);
    unsigned char *b = s->buf + s->n;
    size_t k = 0;
    b[k++] = tag;
    if (fixed) {
        for (int i = 0; i < 8; i++)
            b[k++] = (unsigned char)(x >> (8 * i));
    }
    else {
        while (x >= 0x80) {
            b[k++] = (unsigned char)(x | 0x80);
            x >>= 7;
        }
        b[k++] = (unsigned char)x;
    }
    s->n += k;
}

/* A string: its kind (1, 2 or 4 bytes a code point) and length as the tag, then its raw
 * data.  Short data is copied with a local loop (no memcpy call) through a local pointer:
 * stores through the byte buffer could alias s->n, which would otherwise be reloaded after
 * every byte.  Long data goes in chunks. */
static inline void
sip_str(Sip *s, PyObject *o)
{
    int kind = PyUnicode_KIND(o);
    size_t n = (size_t)PyUnicode_GET_LENGTH(o) * (size_t)kind;
    const unsigned char *p = (const unsigned char *)PyUnicode_DATA(o);
    sip_tag(s, (unsigned char)('0' + kind), (uint64_t)PyUnicode_GET_LENGTH(o), 0);
    if (n <= 64 && SIP_BUF - s->n >= n) {
        unsigned char *d = s->buf + s->n;
        for (size_t i = 0; i < n; i++)
            d[i] = p[i];
        s->n += n;
    }
    else {
        sip_bytes_long(s, p, n);
    }
}

#if PY_VERSION_HEX < 0x030C0000
#define STR_READY(x) PyUnicode_IS_READY(x)
#else
#define STR_READY(x) 1   /* every str is ready since 3.12 */
#endif
#define FP_MAX_DEPTH 1000   /* deeper values are left to the caller's fallback */

static int fp_value(Sip *s, PyObject *o, int depth);

/* An item of a container: a str, the commonest item, without a call; anything else
 * through fp_value. */
static inline int
fp_item(Sip *s, PyObject *x, int depth)
{
    if (Py_TYPE(x) == &PyUnicode_Type && STR_READY(x)) {
        sip_str(s, x);
        return 0;
    }
    return fp_value(s, x, depth);
}

/* 0 on success, 1 for a value outside the encoding (or nested past FP_MAX_DEPTH), -1
 * with an exception set.  Only containers recurse (their string items are encoded by
 * fp_item without a call), with a plain depth count: the C stack stays small, a frame
 * is a few words. */
static int
fp_value(Sip *s, PyObject *o, int depth)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyUnicode_Type) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(o) < 0)
            return -1;
#endif
        sip_str(s, o);
    }
    else if (o == Py_None) {
        sip_tag(s, 'N', 0, 0);
    }
    else if (o == Py_True || o == Py_False) {
        sip_tag(s, 'B', o == Py_True, 0);
    }
    else if (tp == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow)
            return 1;
        if (v == -1 && PyErr_Occurred())
            return -1;
        sip_tag(s, 'i', (uint64_t)v, 1);
    }
    else if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        sip_tag(s, 'f', bits, 1);
    }
    else if (tp == &PyDict_Type) {
        if (depth >= FP_MAX_DEPTH)
            return 1;
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        sip_tag(s, 'd', (uint64_t)PyDict_GET_SIZE(o), 0);
        while (PyDict_Next(o, &pos, &k, &v)) {
            int r = fp_item(s, k, depth + 1);
            if (r == 0)
                r = fp_item(s, v, depth + 1);
            if (r != 0)
                return r;
        }
    }
    else if (tp == &PyList_Type || tp == &PyTuple_Type) {
        if (depth >= FP_MAX_DEPTH)
            return 1;
        int list = tp == &PyList_Type;
        Py_ssize_t n = list ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o);
        PyObject **items = list ? ((PyListObject *)o)->ob_item : ((PyTupleObject *)o)->ob_item;
        sip_tag(s, list ? 'l' : 't', (uint64_t)n, 0);
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = fp_item(s, items[i], depth + 1);
            if (r != 0)
                return r;
        }
    }
    else {
        return 1;
    }
    return 0;
}

static PyObject *
native_fingerprint(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *value;
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "Oy*:fingerprint", &value, &key))
        return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the key must be 16 bytes");
        return NULL;
    }
    uint64_t k0 = 0, k1 = 0;
    const unsigned char *kb = (const unsigned char *)key.buf;
    for (int i = 0; i < 8; i++) {
        k0 |= (uint64_t)kb[i] << (8 * i);
        k1 |= (uint64_t)kb[8 + i] << (8 * i);
    }
    PyBuffer_Release(&key);
    Sip st;   /* about 4 KiB, on the stack */
    Sip *s = &st;
    s->v0 = k0 ^ 0x736f6d6570736575ULL;
    s->v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;   /* 0xee: the 128-bit output variant */
    s->v2 = k0 ^ 0x6c7967656e657261ULL;
    s->v3 = k1 ^ 0x7465646279746573ULL;
    s->len = 0;
    s->n = 0;
    int r = fp_value(s, value, 0);
    if (r < 0)
        return NULL;
    if (r > 0)
        Py_RETURN_NONE;
    /* the last 0-7 bytes and the length; then d = 3 rounds per 64-bit half */
    sip_compress(s);
    uint64_t last = (s->len + s->n) << 56;
    for (size_t b = 0; b < s->n; b++)
        last |= (uint64_t)s->buf[b] << (8 * b);
    uint64_t v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3;
    v3 ^= last;
    SIPROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xee;
    SIPROUND(v0, v1, v2, v3); SIPROUND(v0, v1, v2, v3); SIPROUND(v0, v1, v2, v3);
    uint64_t out[2];
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND(v0, v1, v2, v3); SIPROUND(v0, v1, v2, v3); SIPROUND(v0, v1, v2, v3);
    out[1] = v0 ^ v1 ^ v2 ^ v3;
    unsigned char digest[16];
    for (int i = 0; i < 16; i++)
        digest[i] = (unsigned char)(out[i / 8] >> (8 * (i % 8)));
    return PyBytes_FromStringAndSize((const char *)digest, 16);
}

/* ------------------------------------------------------------------------------------
 * fill_row(table, s, cells) -> tuple
 *
 * One automaton row from its partition: cells is a list of (mask, state), each mask a
 * non-negative int below 2**256 (bit b set = byte b goes to state), the masks disjoint;
 * bytes in no cell go to state 0 (dead).  Writes the 256 states into row s of table
 * (C-contiguous, writable, int32, 256 entries a row) and returns them as a tuple (sharing
 * the cells' state objects).  The Python version: grammar.automaton._fill_row_py.
 */
static inline int
lowest_bit(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int b = 0;
    while (!(x & 1)) {
        x >>= 1;
        b++;
    }
    return b;
#endif
}

static PyObject *
native_fill_row(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *table, *cells;
    Py_ssize_t s;
    if (!PyArg_ParseTuple(args, "OnO!:fill_row", &table, &s, &PyList_Type, &cells))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(table, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    PyObject *result = NULL, *zero = NULL, *sixtyfour = NULL;
    PyObject *objs[256];
    if (view.itemsize != 4 || s < 0 || view.len < (s + 1) * 256 * (Py_ssize_t)4) {
        PyErr_SetString(PyExc_ValueError, "fill_row: table must be int32 with room for row s");
        goto done;
    }
    int32_t *row = (int32_t *)view.buf + s * 256;
    zero = PyLong_FromLong(0);
    sixtyfour = PyLong_FromLong(64);
    if (zero == NULL || sixtyfour == NULL)
        goto done;
    for (int b = 0; b < 256; b++) {
        row[b] = 0;
        objs[b] = zero;
    }
    Py_ssize_t n = PyList_GET_SIZE(cells);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *cell = PyList_GET_ITEM(cells, i);
        if (!PyTuple_Check(cell) || PyTuple_GET_SIZE(cell) != 2
            || !PyLong_Check(PyTuple_GET_ITEM(cell, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(cell, 1))) {
            PyErr_SetString(PyExc_TypeError, "fill_row: cells are (int mask, int state)");
            goto done;
        }
        PyObject *st = PyTuple_GET_ITEM(cell, 1);
        long sv = PyLong_AsLong(st);
        if (sv == -1 && PyErr_Occurred())
            goto done;
        PyObject *m = PyTuple_GET_ITEM(cell, 0);
        Py_INCREF(m);
        for (int w = 0; w < 4; w++) {   /* the mask's 64-bit words, low first */
            uint64_t word = PyLong_AsUnsignedLongLongMask(m);
            if (word == (uint64_t)-1 && PyErr_Occurred()) {
                Py_DECREF(m);
                goto done;
            }
            for (; word; word &= word - 1) {
                int b = w * 64 + lowest_bit(word);
                row[b] = (int32_t)sv;
                objs[b] = st;
            }
            if (w == 3)
                break;
            PyObject *next = PyNumber_Rshift(m, sixtyfour);
            Py_DECREF(m);
            if (next == NULL)
                goto done;
            m = next;
            int more = PyObject_IsTrue(m);
            if (more <= 0) {
                Py_DECREF(m);
                if (more < 0)
                    goto done;
                m = NULL;
                break;
            }
        }
        Py_XDECREF(m);
    }
    result = PyTuple_New(256);
    if (result != NULL) {
        for (int b = 0; b < 256; b++) {
            Py_INCREF(objs[b]);
            PyTuple_SET_ITEM(result, b, objs[b]);
        }
    }
done:
    Py_XDECREF(zero);
    Py_XDECREF(sixtyfour);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef native_methods[] = {
    {"walk", native_walk, METH_VARARGS,
     "walk(label, child_lo, child_hi, term_lo, term_n, ids, level_off, parent, start, table, "
     "refill, out_ids, out_ends, dense_fraction) -> count: token-trie walk over an int32 "
     "transition table (see grammar/_native.c)."},
    {"fill_row", native_fill_row, METH_VARARGS,
     "fill_row(table, s, cells) -> tuple: an automaton row from its (mask, state) partition, "
     "written into row s of an int32 table (see grammar/_native.c)."},
    {"fingerprint", native_fingerprint, METH_VARARGS,
     "fingerprint(value, key) -> bytes | None: keyed SipHash-1-3-128 of a JSON-like value "
     "(see grammar/_native.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "grammar._native",
    "C implementations of the token-trie walk, of an automaton row's fill and of the schema "
    "fingerprint (optional; grammar falls back to numpy, Python and marshal).",
    -1, native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&native_module);
}
