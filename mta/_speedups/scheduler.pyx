# cython: language_level=3, boundscheck=False, wraparound=False
"""scheduler - compiled per-destination queues of the queue manager.

Same API and behaviour as scheduler_ref.py (the specification): see its
docstring. Destinations and transports are cdef classes with C fields, so
pick() and done() run without Python attribute lookups.
"""

from collections import deque

from mta._speedups.scheduler_ref import parse_feedback  # noqa: F401 - same API


DEF EPSILON = 1e-9  # sums of feedback fractions (3 x 1/3) count as whole


cdef inline double _round(double x):
    cdef double r = <double>(<long>(x + 0.5)) if x >= 0 else -<double>(<long>(-x + 0.5))
    if abs(x - r) < EPSILON:
        return r
    return x


cdef inline double _feedback(double num, double power, double window):
    if power != 0.0:
        return num / (window ** power)
    return num


cdef class Transport:
    cdef public str name
    cdef public long limit
    cdef public long busy
    cdef public object ring

    def __init__(self, str name, long limit):
        self.name = name
        self.limit = limit
        self.busy = 0
        self.ring = deque()


cdef class Destination:
    cdef public Transport transport
    cdef public str key
    cdef public object entries
    cdef public long busy
    cdef public double window
    cdef public long limit
    cdef public long init_window
    cdef public double pos_num, pos_pow, neg_num, neg_pow
    cdef public double cohort_limit
    cdef public double rate_delay
    cdef public double credit, debit, fail_cohorts
    cdef public double dead_until
    cdef public double next_time
    cdef public bint queued

    def __init__(self, Transport transport, str key, long init_window, long limit,
                 double pos_num, double pos_pow, double neg_num, double neg_pow,
                 double cohort_limit, double rate_delay):
        self.transport = transport
        self.key = key
        self.entries = deque()
        self.busy = 0
        self.init_window = init_window if init_window > 1 else 1
        self.limit = limit
        if rate_delay > 0:
            self.init_window = 1
            self.limit = 1
        self.window = <double>self.init_window
        if self.limit > 0 and self.window > self.limit:
            self.window = <double>self.limit
        self.pos_num = pos_num
        self.pos_pow = pos_pow
        self.neg_num = neg_num
        self.neg_pow = neg_pow
        self.cohort_limit = cohort_limit
        self.rate_delay = rate_delay
        self.credit = 0.0
        self.debit = 0.0
        self.fail_cohorts = 0.0
        self.dead_until = 0.0
        self.next_time = 0.0
        self.queued = False

    cpdef bint is_dead(self):
        return self.dead_until > 0.0

    cpdef bint can_start(self, double now):
        return (
            self.dead_until == 0.0
            and self.busy < <long>self.window
            and self.next_time <= now
            and len(self.entries) > 0
        )


cdef class Scheduler:
    cdef public dict transports
    cdef public object order
    cdef public dict dests
    cdef public long waiting

    def __init__(self):
        self.transports = {}
        self.order = deque()
        self.dests = {}
        self.waiting = 0

    cpdef set_transport(self, str name, long limit):
        cdef Transport t = self.transports.get(name)
        if t is None:
            t = Transport(name, limit)
            self.transports[name] = t
            self.order.append(t)
        else:
            t.limit = limit

    def destination(self, str transport, str key, long init_window, long limit,
                    double pos_num=1.0, double pos_pow=0.0, double neg_num=1.0,
                    double neg_pow=0.0, double cohort_limit=1.0, double rate_delay=0.0):
        cdef tuple k = (transport, key)
        cdef Destination d = self.dests.get(k)
        cdef Transport t
        if d is None:
            t = self.transports.get(transport)
            if t is None:
                self.set_transport(transport, 0)
                t = self.transports[transport]
            d = Destination(t, key, init_window, limit, pos_num, pos_pow, neg_num, neg_pow,
                            cohort_limit, rate_delay)
            self.dests[k] = d
        return d

    def find(self, str transport, str key):
        return self.dests.get((transport, key))

    cpdef push(self, Destination d, object entry):
        d.entries.append(entry)
        self.waiting += 1
        if not d.queued:
            d.queued = True
            d.transport.ring.append(d)

    cpdef list drain(self, Destination d):
        cdef list out = list(d.entries)
        d.entries.clear()
        self.waiting -= len(out)
        return out

    cpdef object pick(self, double now):
        cdef Py_ssize_t i, j, n_t, n_d
        cdef Transport t
        cdef Destination d
        cdef object ring, entry
        n_t = len(self.order)
        for i in range(n_t):
            t = self.order[0]
            self.order.rotate(-1)
            if t.limit and t.busy >= t.limit:
                continue
            ring = t.ring
            n_d = len(ring)
            for j in range(n_d):
                d = ring.popleft()
                if len(d.entries) == 0:
                    d.queued = False
                    continue
                if not (d.dead_until == 0.0 and d.busy < <long>d.window and d.next_time <= now):
                    ring.append(d)
                    continue
                entry = d.entries.popleft()
                self.waiting -= 1
                d.busy += 1
                t.busy += 1
                if d.rate_delay > 0:
                    d.next_time = now + d.rate_delay
                if len(d.entries):
                    ring.append(d)
                else:
                    d.queued = False
                return d, entry
        return None

    cpdef bint done(self, Destination d, bint ok, double now, double revive_after):
        d.busy -= 1
        d.transport.busy -= 1
        if d.dead_until > 0.0:
            return False
        if ok:
            d.fail_cohorts = 0.0
            d.debit = 0.0
            if d.limit <= 0 or d.window < d.limit:
                d.credit += _feedback(d.pos_num, d.pos_pow, d.window)
                if d.credit >= 1.0 - EPSILON:
                    d.window = _round(d.window + d.credit)
                    d.credit = 0.0
                    if d.limit > 0 and d.window > d.limit:
                        d.window = <double>d.limit
            return False
        d.credit = 0.0
        d.fail_cohorts += 1.0 / d.window
        if d.cohort_limit > 0 and d.fail_cohorts >= d.cohort_limit - EPSILON:
            d.dead_until = now + revive_after
            return True
        d.debit += _feedback(d.neg_num, d.neg_pow, d.window)
        if d.debit >= 1.0 - EPSILON:
            d.window = _round(d.window - d.debit)
            if d.window < 1.0:
                d.window = 1.0
            d.debit = 0.0
        return False

    cpdef list revive(self, double now):
        cdef list out = []
        cdef Destination d
        for d in self.dests.values():
            if d.dead_until and d.dead_until <= now:
                d.dead_until = 0.0
                d.fail_cohorts = 0.0
                d.window = <double>d.init_window
                out.append(d)
        return out

    cpdef object next_event(self, double now):
        cdef object best = None
        cdef double t
        cdef Destination d
        for d in self.dests.values():
            t = 0.0
            if d.dead_until:
                t = d.dead_until
            elif len(d.entries) and d.next_time > now:
                t = d.next_time
            if t and (best is None or t < best):
                best = t
        return best

    cpdef long forget_idle(self):
        cdef list idle = []
        cdef Destination d
        for k, d in self.dests.items():
            if not len(d.entries) and not d.busy and not d.dead_until and d.next_time == 0.0:
                idle.append(k)
        for k in idle:
            del self.dests[k]
        return len(idle)
