# C-level declarations for the Cython build of grammar/ir.py (Cython's "augmenting .pxd":
# read only when setup.py compiles ir.py; the .py itself stays plain Python and runs
# unchanged without a build).  They make Term an extension type with its fields in a C
# struct, and type the operands and locals of the functions on the path of a new
# automaton state (derivative rows, hash-consed construction), so their attribute reads are
# struct reads and their calls to one another C calls.  Only object-typed fields and
# Python containers: the semantics are Python's (no C integer can overflow).
#
# Keep in step with ir.py: a name declared here must keep its signature there.  An edit
# here makes the build stale like an edit of ir.py (grammar.native.module_choice).

cimport cython

cdef class Term:
    cdef public object id
    cdef public str kind
    cdef public tuple args
    cdef public object nullable
    cdef public object has_bool
    cdef public object _row
    cdef public object _minlen
    cdef public object _specials
    cdef public object _dsyms
    cdef public object _null
    cdef public object _lb
    cdef public object _live
    cdef object __weakref__

@cython.locals(a=Term, b=Term, x=Term)
cpdef _known_lengths(Term t, str kind, tuple args, object nullable)

@cython.locals(t=Term)
cpdef Term _mk(str kind, tuple args, object nullable, object has_bool, object key=*)

cpdef Term _seq2(Term a, Term b)

@cython.locals(n=cython.Py_ssize_t, a=Term, b=Term, t=Term, items=set, stack=list,
               args=tuple, ka=str, kb=str)
cpdef Term _alt(tuple ts)

@cython.locals(a=Term, b=Term, x=Term, inner=list, r=list, ra=list)
cpdef list row(Term t)

@cython.locals(r=list, out=dict, x=Term)
cpdef list _coalesce(list r)

@cython.locals(cells=list, cell=list, out=dict, nt=Term, t=Term, ts=list, r=list,
               disjoint=cython.bint)
cpdef list _union_rows(list rows)

@cython.locals(out=dict, ta=Term, tb=Term, t=Term)
cpdef list _merge(list a, list b, object op)

cpdef object _op_alt(object x, object y)
cpdef object _op_and(object x, object y)
cpdef object is_nullable(Term t)
