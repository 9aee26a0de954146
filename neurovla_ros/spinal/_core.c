/* The spinal controller's numeric tick in C: acceleration estimate, ON/OFF encoder, the LIF
 * network (event-driven: only inputs and spikes that are non-zero cost work), decoder and limit
 * guard, in one call; and the collision observer's arithmetic around MuJoCo's mj_rne. The reference implementation is the numpy code in controller.py,
 * encoding.py and lif.py; test_spinal_core.py checks that both give the same commands.
 *
 * Core(buffers, scalars, dims) binds the controller's own numpy arrays (float64, C order) once,
 * so the state stays visible to Python; step(...) then runs one 1 ms tick.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* bound arrays, in the order Python passes them (sizes in units of J = joints) */
enum {
    B_VEL_GAIN, B_INERTIA_N, B_DAMP_N, B_FRIC_N,   /* encoder gains (J) */
    B_QDD, B_PREV,                                 /* acceleration estimator state (J) */
    B_SIGNALS,                                     /* input signals: (source, gain) rows (C/2, 2) */
    B_X,                                           /* encoded input channels (C, J) */
    B_WT_T,                                        /* [W_rec | W_in]^T plus readout rows (H+C, H+3) */
    B_SA,                                          /* [spikes ; input] (H+C, J) */
    B_OUT, B_DECAY,                                /* [readout ; sops ; spikes] and decays (3, J) */
    B_V, B_BETA,                                   /* membranes and their decay (H, J) */
    B_TICK_SPIKES,                                 /* spikes of the last tick per neuron (H, J) */
    B_COUNTS,                                      /* [ticks, input sops] (2) */
    B_UNIT, B_TAU,                                 /* decoder unit and raw torque (J) */
    B_LIMITS,                                      /* guard rows: effort vmax vstart kv kp kd upper lower (8, J) */
    B_CLIPPED,                                     /* ticks where the guard changed the command (1) */
    NB
};
/* scalars */
enum { S_INV_E, S_INV_VEPS, S_X_MAX, S_ACC_TAU, S_ACC_MAX_DT, S_INPUT_EVENT, S_IN_OPS,
       S_BAND_LO, S_BAND_INV, NS };   /* the servo band: |z_pos| where the PD servo takes over */

typedef struct {
    PyObject_HEAD
    Py_buffer view[NB];
    int nbound;
    double *p[NB];
    double s[NS];
    int J, C, H, substeps, record;
} Core;

/* Release the first *nbound bound arrays (both types keep their arrays this way). */
static void release_views(Py_buffer *view, int *nbound)
{
    for (int i = 0; i < *nbound; i++)
        PyBuffer_Release(&view[i]);
    *nbound = 0;
}

static void core_release(Core *self)
{
    release_views(self->view, &self->nbound);
}

static void core_dealloc(Core *self)
{
    core_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int get_doubles(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t min_len,
                       const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != 8 || !view->format || strcmp(view->format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s: need float64 values", what);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len / 8 < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: need %zd values, got %zd", what, min_len,
                     view->len / 8);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int bind_arrays(PyObject *bufs, int nb, const Py_ssize_t *need, const char *fmt,
                       Py_buffer *view, double **p, int *nbound);

static int core_init(Core *self, PyObject *args, PyObject *kw)
{
    PyObject *bufs, *scal;
    int J, C, H, substeps, record;
    if (!PyArg_ParseTuple(args, "O!O!iiiii", &PyTuple_Type, &bufs, &PyTuple_Type, &scal,
                          &J, &C, &H, &substeps, &record))
        return -1;
    if (PyTuple_GET_SIZE(bufs) != NB || PyTuple_GET_SIZE(scal) != NS) {
        PyErr_Format(PyExc_ValueError, "need %d arrays and %d scalars", NB, NS);
        return -1;
    }
    if (J < 1 || C < 2 || C % 2 || H < 1 || substeps < 1) {
        PyErr_SetString(PyExc_ValueError, "dimensions must be positive, channels even");
        return -1;
    }
    const Py_ssize_t need[NB] = {
        J, J, J, J, J, J, C, (Py_ssize_t)C * J, (Py_ssize_t)(H + C) * (H + 3),
        (Py_ssize_t)(H + C) * J, 3 * J, 3 * J, (Py_ssize_t)H * J, (Py_ssize_t)H * J,
        (Py_ssize_t)H * J, 2, J, J, 8 * J, 1};
    core_release(self);
    if (bind_arrays(bufs, NB, need, NULL, self->view, self->p, &self->nbound) < 0) {
        core_release(self);
        return -1;
    }
    for (int i = 0; i < NS; i++) {
        self->s[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(scal, i));
        if (PyErr_Occurred()) {
            core_release(self);
            return -1;
        }
    }
    for (int k = 0; k < C / 2; k++) {
        double src = self->p[B_SIGNALS][2 * k];
        if (!(src == 0.0 || src == 1.0 || src == 2.0)) {
            PyErr_SetString(PyExc_ValueError, "signal sources must be 0, 1 or 2");
            core_release(self);
            return -1;
        }
    }
    self->J = J, self->C = C, self->H = H, self->substeps = substeps, self->record = record;
    return 0;
}

/* Bind float64 arrays (fmt[i] == 'b': a bool array instead) with at least need[i] items. */
static int bind_arrays(PyObject *bufs, int nb, const Py_ssize_t *need, const char *fmt,
                       Py_buffer *view, double **p, int *nbound)
{
    for (int i = 0; i < nb; i++) {
        char what[32];
        snprintf(what, sizeof what, "array %d", i);
        PyObject *obj = PyTuple_GET_ITEM(bufs, i);
        if (fmt && fmt[i] == 'b') {
            if (PyObject_GetBuffer(obj, &view[i], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                   PyBUF_WRITABLE) < 0)
                return -1;
            if (view[i].itemsize != 1 || !view[i].format || strcmp(view[i].format, "?") ||
                view[i].len < need[i]) {
                PyErr_Format(PyExc_TypeError, "%s: need %zd bools", what, need[i]);
                PyBuffer_Release(&view[i]);
                return -1;
            }
        } else if (get_doubles(obj, &view[i], 1, need[i], what) < 0) {
            return -1;
        }
        *nbound = i + 1;
        p[i] = (double *)view[i].buf;
    }
    return 0;
}

static inline double clamp(double v, double lo, double hi)
{
    return v > hi ? hi : (v < lo ? lo : v);
}

/* The network tick on the input already in x (see lif.py for the dynamics). */
static void net_tick(Core *c)
{
    const int J = c->J, C = c->C, H = c->H, R = H + 3;
    double *x = c->p[B_X], *wt = c->p[B_WT_T], *sa = c->p[B_SA], *out = c->p[B_OUT];
    double *decay = c->p[B_DECAY], *v = c->p[B_V], *beta = c->p[B_BETA];
    double *ts = c->p[B_TICK_SPIKES];
    double cat[R * J];     /* [current ; readout increment ; sops ; spikes] (R, J) */
    memcpy(sa + (size_t)H * J, x, sizeof(double) * C * J);
    if (c->record)
        memset(ts, 0, sizeof(double) * H * J);
    for (int sub = 0; sub < c->substeps; sub++) {
        memset(cat, 0, sizeof cat);
        for (int n = 0; n < H + C; n++) {       /* event-driven: skip silent rows */
            const double *w = wt + (size_t)n * R, *a = sa + (size_t)n * J;
            for (int j = 0; j < J; j++) {
                double e = a[j];
                if (e == 0.0)
                    continue;
                for (int r = 0; r < R; r++)
                    cat[r * J + j] += w[r] * e;
            }
        }
        for (int k = 0; k < 3 * J; k++)
            out[k] = out[k] * decay[k] + cat[H * J + k];
        for (int k = 0; k < H * J; k++) {
            double vk = v[k] * beta[k] + cat[k];
            double s = vk > 1.0 ? 1.0 : 0.0;    /* potentials are in units of theta */
            v[k] = vk - s;
            sa[k] = s;
            if (c->record)
                ts[k] += s;
        }
    }
    int n_in = 0;
    for (int k = 0; k < C * J; k++)
        n_in += x[k] > c->s[S_INPUT_EVENT];
    c->p[B_COUNTS][0] += 1.0;
    c->p[B_COUNTS][1] += n_in * c->s[S_IN_OPS];
}

/* step(q_des, qd_des, q, qd, dt, scale, ff, primed, hold) -> list of J limited torques */
static PyObject *core_step(Core *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "step(q_des, qd_des, q, qd, dt, scale, ff, primed, hold)");
        return NULL;
    }
    const int J = c->J;
    static const char *names[5] = {"q_des", "qd_des", "q", "qd", "ff"};
    Py_buffer in[5];
    int got = 0, nin = args[6] == Py_None ? 4 : 5;
    PyObject *result = NULL;
    for (; got < nin; got++)
        if (get_doubles(args[got < 4 ? got : 6], &in[got], 0, J, names[got]) < 0)
            goto done;
    double dt = PyFloat_AsDouble(args[4]), scale = PyFloat_AsDouble(args[5]);
    double hold = PyFloat_AsDouble(args[8]);
    int primed = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred() || primed < 0)
        goto done;
    const double *q_des = in[0].buf, *qd_des = in[1].buf, *q = in[2].buf, *qd = in[3].buf;
    const double *ff = nin == 5 ? in[4].buf : NULL;
    double *qdd = c->p[B_QDD], *prev = c->p[B_PREV], *x = c->p[B_X], *tau = c->p[B_TAU];
    const double *s = c->s;
    /* desired acceleration: finite difference through a first-order low-pass */
    if (primed && dt > 0.0 && dt <= s[S_ACC_MAX_DT]) {
        double a = s[S_ACC_TAU] > 0 ? fmin(1.0, dt / s[S_ACC_TAU]) : 1.0, inv = 1.0 / dt;
        for (int j = 0; j < J; j++)
            qdd[j] += ((qd_des[j] - prev[j]) * inv - qdd[j]) * a;
    }
    memcpy(prev, qd_des, sizeof(double) * J);
    /* encoder: signed signals (scaled per input signal) -> ON/OFF channels in [0, x_max] */
    const int S = c->C / 2;
    const double *sig = c->p[B_SIGNALS];
    for (int j = 0; j < J; j++) {
        double z[3];
        z[0] = (q_des[j] - q[j]) * s[S_INV_E];
        z[1] = (qd_des[j] - qd[j]) * c->p[B_VEL_GAIN][j];
        z[2] = qd_des[j] * c->p[B_DAMP_N][j] + tanh(qd_des[j] * s[S_INV_VEPS]) * c->p[B_FRIC_N][j]
               + qdd[j] * c->p[B_INERTIA_N][j];
        for (int k = 0; k < S; k++) {
            double v = z[(int)sig[2 * k]] * sig[2 * k + 1];
            x[k * J + j] = clamp(v, 0.0, s[S_X_MAX]);
            x[(k + S) * J + j] = clamp(-v, 0.0, s[S_X_MAX]);
        }
    }
    net_tick(c);
    /* decoder, the PD servo's share (the hold weight, or the position error leaving the
     * trained range), compliance scale, feed-forward, then the limit guard */
    const double *y = c->p[B_OUT], *unit = c->p[B_UNIT], *lim = c->p[B_LIMITS];
    result = PyList_New(J);
    if (!result)
        goto done;
    int changed = 0;
    for (int j = 0; j < J; j++) {
        double eff = lim[j], vmax = lim[J + j], vstart = lim[2 * J + j], kv = lim[3 * J + j];
        double kp = lim[4 * J + j], kd = lim[5 * J + j], upper = lim[6 * J + j];
        double lower = lim[7 * J + j], vi = qd[j], qi = q[j];
        double t = y[j] * unit[j];
        double u = clamp((fabs(q_des[j] - qi) * s[S_INV_E] - s[S_BAND_LO]) * s[S_BAND_INV],
                         0.0, 1.0);
        double w = u * (u * (3.0 - 2.0 * u));
        if (hold > w)
            w = hold;
        double pd = kp * (q_des[j] - qi) + kd * (qd_des[j] - vi);
        t += (pd - t) * w;
        t *= scale;
        if (ff)
            t += ff[j];
        tau[j] = t;
        double hi = eff, lo = -eff, b;
        if (vi > vstart)
            hi = fmin(hi, kv * (vmax - vi));
        else if (vi < -vstart)
            lo = fmax(lo, -kv * (vmax + vi));
        b = kp * (upper - qi) - kd * vi;
        if (b < hi)
            hi = b;
        b = kp * (lower - qi) - kd * vi;
        if (b > lo)
            lo = b;
        if (hi < -eff)
            hi = -eff;
        if (lo > eff)
            lo = eff;
        double out = t > hi ? hi : (t < lo ? lo : t);
        changed |= out != t;
        PyObject *f = PyFloat_FromDouble(out);
        if (!f) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, j, f);
    }
    if (changed)
        c->p[B_CLIPPED][0] += 1.0;
done:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&in[i]);
    return result;
}

static PyMethodDef core_methods[] = {
    {"step", (PyCFunction)(void (*)(void))core_step, METH_FASTCALL,
     "step(q_des, qd_des, q, qd, dt, scale, ff, primed, hold) -> list of limited torques"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "neurovla_ros.spinal._core.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Core(arrays, scalars, J, C, H, substeps, record): the spinal tick in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
};

/* ---------------------------------------------------------------- the collision observer
 * Observer(arrays, gain, period, nv): the vector arithmetic of CollisionDetector.update around
 * MuJoCo's inverse dynamics (reflex.py is the reference): acceleration(qd, dt) writes the
 * finite-difference acceleration into the detector's and MjData's qacc; the caller runs
 * mj_rne; residual(effort, dt) -> bool turns it into the external-torque estimate and the
 * per-joint hits.
 */
enum {
    O_QD_PREV, O_QACC, O_DATA_QACC, O_ARM_INERTIA, O_RES, O_PRE,   /* nv each */
    O_R, O_RAW, O_ABS, O_LEVEL, O_GAP, O_EFF_PREV, O_HIT,          /* 6 each (O_HIT: bool) */
    NO
};

typedef struct {
    PyObject_HEAD
    Py_buffer view[NO];
    int nbound;
    double *p[NO];
    double gain, period;
    int nv;
} Observer;

static void observer_release(Observer *self)
{
    release_views(self->view, &self->nbound);
}

static void observer_dealloc(Observer *self)
{
    observer_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int observer_init(Observer *self, PyObject *args, PyObject *kw)
{
    PyObject *bufs;
    double gain, period;
    int nv;
    if (!PyArg_ParseTuple(args, "O!ddi", &PyTuple_Type, &bufs, &gain, &period, &nv))
        return -1;
    if (PyTuple_GET_SIZE(bufs) != NO || nv < 6) {
        PyErr_Format(PyExc_ValueError, "need %d arrays and nv >= 6", NO);
        return -1;
    }
    Py_ssize_t need[NO];
    char fmt[NO + 1];
    for (int i = 0; i < NO; i++) {
        need[i] = i < O_R ? nv : 6;
        fmt[i] = i == O_HIT ? 'b' : 'd';
    }
    fmt[NO] = 0;
    observer_release(self);
    if (bind_arrays(bufs, NO, need, fmt, self->view, self->p, &self->nbound) < 0) {
        observer_release(self);
        return -1;
    }
    self->gain = gain, self->period = period, self->nv = nv;
    return 0;
}

static PyObject *observer_acceleration(Observer *o, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "acceleration(qd, dt)");
        return NULL;
    }
    Py_buffer b;
    if (get_doubles(args[0], &b, 0, 6, "qd") < 0)
        return NULL;
    double dt = PyFloat_AsDouble(args[1]);
    Py_ssize_t n = b.len / 8;
    if (PyErr_Occurred() || n > o->nv) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "qd: more values than dofs");
        PyBuffer_Release(&b);
        return NULL;
    }
    const double *qd = b.buf, inv = 1.0 / dt;
    double *prev = o->p[O_QD_PREV], *qacc = o->p[O_QACC], *dq = o->p[O_DATA_QACC];
    for (Py_ssize_t i = 0; i < n; i++)
        qacc[i] = (qd[i] - prev[i]) * inv;
    memcpy(dq, qacc, sizeof(double) * o->nv);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *observer_residual(Observer *o, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "residual(effort, dt)");
        return NULL;
    }
    Py_buffer b;
    if (get_doubles(args[0], &b, 0, 6, "effort") < 0)
        return NULL;
    double dt = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred()) {
        PyBuffer_Release(&b);
        return NULL;
    }
    const double *eff = b.buf;
    double *res = o->p[O_RES], *r = o->p[O_R], *raw = o->p[O_RAW], *ab = o->p[O_ABS];
    double *level = o->p[O_LEVEL], *gap = o->p[O_GAP], *eprev = o->p[O_EFF_PREV];
    const double *arm = o->p[O_ARM_INERTIA], *qacc = o->p[O_QACC], *pre = o->p[O_PRE];
    char *hit = (char *)o->p[O_HIT];
    for (int i = 0; i < o->nv; i++) {
        res[i] += arm[i] * qacc[i];    /* mj_rne leaves the drives' armature out */
        res[i] += pre[i];              /* viscous + Coulomb friction of the last sample */
    }
    double a = o->gain * dt;
    int any = 0, dropped = dt > 1.5 * o->period;
    double widen = 1.0 + dt / (4.0 * o->period);
    for (int j = 0; j < 6; j++) {
        if (a >= 1.0) {
            r[j] = res[j] - eff[j];
        } else {
            raw[j] = res[j] - eff[j];
            raw[j] -= r[j];
            raw[j] *= a;
            r[j] += raw[j];
        }
        ab[j] = fabs(r[j]);
        if (dropped) {
            gap[j] = fabs(eff[j] - eprev[j]);
            gap[j] += level[j] * widen;
            hit[j] = ab[j] > gap[j];
        } else {
            hit[j] = ab[j] > level[j];
        }
        any |= hit[j];
    }
    PyBuffer_Release(&b);
    return PyBool_FromLong(any);
}

static PyMethodDef observer_methods[] = {
    {"acceleration", (PyCFunction)(void (*)(void))observer_acceleration, METH_FASTCALL,
     "acceleration(qd, dt): qacc = (qd - qd_prev) / dt, also into MjData.qacc"},
    {"residual", (PyCFunction)(void (*)(void))observer_residual, METH_FASTCALL,
     "residual(effort, dt) -> bool: after mj_rne, the external torque estimate and the hits"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ObserverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "neurovla_ros.spinal._core.Observer",
    .tp_basicsize = sizeof(Observer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Observer(arrays, gain, period, nv): the collision observer's arithmetic in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)observer_init,
    .tp_dealloc = (destructor)observer_dealloc,
    .tp_methods = observer_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core",
                                    "The spinal controller's tick in C.", -1, NULL};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddType(m, &CoreType) < 0 || PyModule_AddType(m, &ObserverType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
