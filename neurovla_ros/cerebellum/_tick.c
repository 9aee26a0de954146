/* The cerebellum's tick in C: goal source, jerk-limited tracker (or the linear baseline),
 * health, and at the learning rate the state estimate, the forward model and the tremor
 * canceller; then the reference. The reference implementation is the numpy code of core.py
 * (Cerebellum._tick_numpy and what it calls in shaping.py, estimator.py, forward_model.py and
 * adaptive.py); test_cerebellum_tick.py checks that both give the same bits. Same operations
 * in the same order: vectors element by element, matrix products row by row with the columns
 * added from the first (ops.py), complex numbers as real and imaginary parts, Python's
 * min/max where the reference uses them; compiled with -ffp-contract=off (no fused
 * multiply-adds).
 *
 * Tick(slots, arrays, n) binds the Python objects' own numpy arrays (float64, C order) once,
 * so the state stays visible to Python: slots is {object: (SLOTS, its _s array)} - the scalar
 * state (state.py), names checked against the lists below - and arrays {name: array}.
 * tick(now, dt) then runs one tick; work due only now and then is flagged for after_tick.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define GRAVITY 9.81
#define MAXN 16

/* ---------------------------------------------------------------- slots (state.py) */
#define CORE_SLOTS(X) X(C_T, "t") X(C_T_JOINTS, "t_joints") X(C_T_IMU, "t_imu") \
    X(C_HAS_QUAT, "has_quat") X(C_INITIALIZED, "initialized") X(C_HOLDING, "holding") \
    X(C_ADAPTING, "adapting") X(C_SMOOTHING, "smoothing_code") X(C_DT_NOMINAL, "dt_nominal") \
    X(C_DT_ADAPT, "dt_adapt") X(C_ADAPT_ACC, "adapt_acc") X(C_BAD_TRACK, "bad_track") \
    X(C_REFLEX_T, "reflex_t") X(C_SINCE_MODEL, "since_model") X(C_SINCE_SLOW, "since_slow") \
    X(C_DUE, "due") X(C_JOINT_TIMEOUT, "joint_timeout") X(C_IMU_TIMEOUT, "imu_timeout") \
    X(C_GOAL_FF, "goal_feedforward") X(C_TWIST_TIMEOUT, "twist_timeout") \
    X(C_MAX_TRACK, "max_tracking_error") X(C_RESYNC_TIME, "resync_time") \
    X(C_REFLEX_WINDOW, "reflex_window") X(C_TREMOR, "tremor_enabled") \
    X(C_INERTIA_FF, "inertia_feedforward") X(C_MODEL_PERIOD, "model_period") \
    X(C_HALT_ACC, "halt_acceleration") X(C_HALT_JERK, "halt_jerk")
#define INTAKE_SLOTS(X) X(I_SOURCE, "source_code") X(I_T_TWIST, "t_twist") \
    X(I_LIN_T0, "lin_t0") X(I_LIN_T, "lin_T") X(I_LAST_GOAL_T, "last_goal_t")
#define GOALS_SLOTS(X) X(G_T, "t") X(G_ACTIVE, "active") X(G_HORIZON, "horizon")
#define TRACKER_SLOTS(X) X(TR_KX, "kx") X(TR_KV, "kv") X(TR_KA, "ka")
#define ESTIMATOR_SLOTS(X) X(E_K, "k") X(E_KIN_PERIOD, "kinematics_period") \
    X(E_SINCE_KIN, "since_kin") X(E_KIN_DUE, "kin_due") X(E_HAVE_IMU, "have_imu") \
    X(E_IMU_USED, "imu_used")
#define MODEL_SLOTS(X) X(M_I, "i") X(M_NSUB, "nsub") X(M_LINES, "lines") \
    X(M_ACCEL_LP, "accel_lowpass")
#define CANCELLER_SLOTS(X) X(K_PHI, "phi") X(K_ADVANCED, "advanced") X(K_T, "t") \
    X(K_F_HAT, "f_hat") X(K_LOCKED, "locked") X(K_STATE, "state_code") X(K_LISTEN, "listen") \
    X(K_R_REF, "r_ref") X(K_BACKOFF, "backoff") X(K_ADAPTING_FOR, "adapting_for") \
    X(K_BAD_SINCE, "bad_since") X(K_GOOD_FOR, "good_for") X(K_STRIKES, "strikes") \
    X(K_RESETS, "resets") X(K_SINCE_UPDATE, "since_update") X(K_TRACK_DUE, "track_due") \
    X(K_IBUF, "ibuf") X(K_FILLED, "filled") X(K_NBUF, "nbuf") X(K_WINDOW, "window") \
    X(K_UPDATE_PERIOD, "update_period") X(K_PLL_TIME, "pll_time") \
    X(K_ADAPT_TIME, "adapt_time") X(K_LEAK_TIME, "leak_time") X(K_FADE_TIME, "fade_time") \
    X(K_MIN_AMPLITUDE, "min_amplitude") X(K_LISTEN_TIME, "listen_time") \
    X(K_BACKOFF_TIME, "backoff_time")
#define HIGHPASS_SLOTS(X) X(H_TAU, "tau") X(H_PRIMED, "primed")

#define ENUM(id, name) id,
#define NAME(id, name) name,
enum { CORE_SLOTS(ENUM) N_CORE };
enum { INTAKE_SLOTS(ENUM) N_INTAKE };
enum { GOALS_SLOTS(ENUM) N_GOALS };
enum { TRACKER_SLOTS(ENUM) N_TRACKER };
enum { ESTIMATOR_SLOTS(ENUM) N_ESTIMATOR };
enum { MODEL_SLOTS(ENUM) N_MODEL };
enum { CANCELLER_SLOTS(ENUM) N_CANCELLER };
enum { HIGHPASS_SLOTS(ENUM) N_HIGHPASS };

static const char *core_names[] = {CORE_SLOTS(NAME) NULL};
static const char *intake_names[] = {INTAKE_SLOTS(NAME) NULL};
static const char *goals_names[] = {GOALS_SLOTS(NAME) NULL};
static const char *tracker_names[] = {TRACKER_SLOTS(NAME) NULL};
static const char *estimator_names[] = {ESTIMATOR_SLOTS(NAME) NULL};
static const char *model_names[] = {MODEL_SLOTS(NAME) NULL};
static const char *canceller_names[] = {CANCELLER_SLOTS(NAME) NULL};
static const char *highpass_names[] = {HIGHPASS_SLOTS(NAME) NULL};

enum { O_CORE, O_INTAKE, O_GOALS, O_TRACKER, O_ESTIMATOR, O_MODEL, O_CANCELLER, O_HIGHPASS,
       NOBJ };
static const char *obj_keys[NOBJ] = {"core", "intake", "goals", "tracker", "estimator",
                                     "model", "canceller", "highpass"};
static const char **obj_names[NOBJ] = {core_names, intake_names, goals_names, tracker_names,
                                       estimator_names, model_names, canceller_names,
                                       highpass_names};
static const int obj_len[NOBJ] = {N_CORE, N_INTAKE, N_GOALS, N_TRACKER, N_ESTIMATOR, N_MODEL,
                                  N_CANCELLER, N_HIGHPASS};

/* ---------------------------------------------------------------- arrays
 * size in doubles: N = n, M = n * n, C2 = complex n, CM = complex n x n, B = 2 nbuf n,
 * TB = 2 nbuf, L = lines * 3 * n, and small fixed sizes */
#define ARRAYS(X) \
    X(A_Q, "q", N) X(A_QD, "qd", N) X(A_GYRO, "gyro", 3) X(A_ACCEL, "accel", 3) \
    X(A_QUAT, "quat", 4) X(A_REF_POS, "ref_pos", N) X(A_REF_VEL, "ref_vel", N) \
    X(A_REF_EFF, "ref_eff", N) X(A_M_EXTRA, "m_extra", M) X(A_GOAL_P, "goal_p", N) \
    X(A_GOAL_V, "goal_v", N) X(A_ERR, "err", N) X(A_LOWER, "lower", N) \
    X(A_UPPER, "upper", N) X(A_VMAX, "vmax", N) \
    X(A_SERVO_GOAL, "servo_goal", N) X(A_SERVO_QD, "servo_qd", N) \
    X(A_LIN_FROM, "lin_from", N) X(A_LIN_TO, "lin_to", N) \
    X(A_GF_P, "goal_filter_p", N) X(A_GF_V, "goal_filter_v", N) \
    X(A_TR_X, "tr_x", N) X(A_TR_V, "tr_v", N) X(A_TR_A, "tr_a", N) X(A_TR_J, "tr_j", N) \
    X(A_TR_LOWER, "tr_lower", N) X(A_TR_UPPER, "tr_upper", N) X(A_TR_VMAX, "tr_vmax", N) \
    X(A_TR_AMAX, "tr_amax", N) X(A_TR_JMAX, "tr_jmax", N) \
    X(A_QD_FUSED, "qd_fused", N) X(A_IMU_ROT, "imu_rot", 9) X(A_TWIST_ENC, "twist_enc", 6) \
    X(A_TWIST_F, "twist_f", 6) X(A_GYRO_PREV, "gyro_prev", 3) X(A_ALPHA, "alpha", 3) \
    X(A_W_MEAS, "w_meas", 3) X(A_A_IMU, "a_imu", 3) X(A_DTW, "dtw", 6) \
    X(A_QD_ENC, "qd_enc", N) X(A_EST_Q, "est_q", N) X(A_IMU_JAC, "imu_jac", 6 * n) \
    X(A_IMU_PINV, "imu_jac_pinv", 6 * n) \
    X(A_KP, "kp", N) X(A_KD, "kd", N) X(A_B, "b", N) X(A_B_FF, "b_ff", N) \
    X(A_M_FF, "m_ff", N) X(A_M, "m", N) X(A_FM_Q, "fm_q", N) X(A_FM_QD, "fm_qd", N) \
    X(A_FM_QDD, "fm_qdd", N) X(A_TORQUE, "torque", N) X(A_LINE, "line", L) \
    X(A_ACC, "acc", N) X(A_RD_PREV, "rd_prev", N) \
    X(A_W, "w", C2) X(A_G, "g", CM) X(A_G_INV, "g_inv", CM) X(A_Z, "z", C2) X(A_R, "r", C2) \
    X(A_MAX_CORR, "max_correction", N) X(A_CAP, "cap", N) X(A_E_HP, "e_hp", N) \
    X(A_DIST, "dist", N) X(A_BUF, "buf", B) X(A_TBUF, "tbuf", TB) \
    X(A_RES_MS, "residual_ms", N) X(A_DIST_MS, "disturbance_ms", N) X(A_U, "u", N) \
    X(A_UD, "ud", N) X(A_HP_X1, "hp_x1", N) X(A_HP_Y1, "hp_y1", N) X(A_HP_X2, "hp_x2", N) \
    X(A_HP_Y, "hp_y", N)

#define AENUM(id, name, size) id,
enum { ARRAYS(AENUM) NA };

typedef struct {
    PyObject_HEAD
    Py_buffer view[NA + NOBJ];
    int nbound;
    double *a[NA];
    double *s[NOBJ];
    int n, nbuf, lines;
} Tick;

static void tick_release(Tick *t)
{
    for (int i = 0; i < t->nbound; i++)
        PyBuffer_Release(&t->view[i]);
    t->nbound = 0;
}

static void tick_dealloc(Tick *t)
{
    tick_release(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* one float64, C-contiguous, writable array with at least min_len values */
static int bind(Tick *t, PyObject *obj, Py_ssize_t min_len, const char *what, double **p)
{
    Py_buffer *v = &t->view[t->nbound];
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        return -1;
    if (v->itemsize != 8 || !v->format || strcmp(v->format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s: need a float64 array", what);
        PyBuffer_Release(v);
        return -1;
    }
    if (v->len / 8 < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: need %zd values, got %zd", what, min_len,
                     v->len / 8);
        PyBuffer_Release(v);
        return -1;
    }
    t->nbound++;
    *p = (double *)v->buf;
    return 0;
}

/* the slot names of one object, "name" or "name:kind", against ours */
static int check_names(PyObject *names, const char **want, int n, const char *key)
{
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != n) {
        PyErr_Format(PyExc_ValueError, "slots of %s: need %d names", key, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
        if (!s)
            return -1;
        size_t len = strcspn(s, ":");
        if (strlen(want[i]) != len || strncmp(s, want[i], len) != 0) {
            PyErr_Format(PyExc_ValueError, "slots of %s: slot %d is %s, the C tick has %s",
                         key, i, s, want[i]);
            return -1;
        }
    }
    return 0;
}

static int tick_init(Tick *t, PyObject *args, PyObject *kw)
{
    PyObject *slots, *arrays;
    int n;
    if (!PyArg_ParseTuple(args, "O!O!i", &PyDict_Type, &slots, &PyDict_Type, &arrays, &n))
        return -1;
    if (n < 1 || n > MAXN) {
        PyErr_Format(PyExc_ValueError, "n must be 1..%d", MAXN);
        return -1;
    }
    tick_release(t);
    t->n = n;
    for (int o = 0; o < NOBJ; o++) {
        PyObject *pair = PyDict_GetItemString(slots, obj_keys[o]);
        if (!pair || !PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_KeyError, "slots: need (names, array) for %s", obj_keys[o]);
            goto fail;
        }
        if (check_names(PyTuple_GET_ITEM(pair, 0), obj_names[o], obj_len[o], obj_keys[o]) < 0
            || bind(t, PyTuple_GET_ITEM(pair, 1), obj_len[o], obj_keys[o], &t->s[o]) < 0)
            goto fail;
    }
    t->nbuf = (int)t->s[O_CANCELLER][K_NBUF];
    t->lines = (int)t->s[O_MODEL][M_LINES];
    if (t->nbuf < 1 || t->lines < 1) {
        PyErr_SetString(PyExc_ValueError, "canceller nbuf and model lines must be >= 1");
        goto fail;
    }
    {
        const Py_ssize_t N = n, M = n * n, C2 = 2 * n, CM = 2 * n * n;
        const Py_ssize_t B = 2 * (Py_ssize_t)t->nbuf * n, TB = 2 * (Py_ssize_t)t->nbuf;
        const Py_ssize_t L = (Py_ssize_t)t->lines * 3 * n;
        (void)N, (void)M, (void)C2, (void)CM, (void)B, (void)TB, (void)L;
#define ABIND(id, name, size) { \
            PyObject *obj = PyDict_GetItemString(arrays, name); \
            if (!obj) { \
                PyErr_Format(PyExc_KeyError, "arrays: %s missing", name); \
                goto fail; \
            } \
            if (bind(t, obj, size, name, &t->a[id]) < 0) \
                goto fail; \
        }
        ARRAYS(ABIND)
#undef ABIND
    }
    return 0;
fail:
    tick_release(t);
    return -1;
}

/* ---------------------------------------------------------------- arithmetic helpers */
/* Python's max(a, b) and min(a, b): the first argument unless the second is larger/smaller */
static inline double pymax(double a, double b) { return b > a ? b : a; }
static inline double pymin(double a, double b) { return b < a ? b : a; }
/* numpy's maximum/minimum (no NaNs on this path) */
static inline double npmax(double a, double b) { return a >= b ? a : b; }
static inline double npmin(double a, double b) { return a <= b ? a : b; }

/* out = m x, columns added in order (ops.matvec) */
static void matvec(const double *m, const double *x, double *out, int rows, int cols)
{
    for (int i = 0; i < rows; i++) {
        const double *row = m + (size_t)i * cols;
        double acc = row[0] * x[0];
        for (int j = 1; j < cols; j++)
            acc += row[j] * x[j];
        out[i] = acc;
    }
}

/* complex out = m x (interleaved re, im), columns added in order (ops.cmatvec) */
static void cmatvec(const double *m, const double *x, double *out, int n)
{
    for (int i = 0; i < n; i++) {
        const double *row = m + (size_t)2 * i * n;
        double re = row[0] * x[0] - row[1] * x[1];
        double im = row[0] * x[1] + row[1] * x[0];
        for (int j = 1; j < n; j++) {
            re += row[2 * j] * x[2 * j] - row[2 * j + 1] * x[2 * j + 1];
            im += row[2 * j] * x[2 * j + 1] + row[2 * j + 1] * x[2 * j];
        }
        out[2 * i] = re;
        out[2 * i + 1] = im;
    }
}

/* sqrt(sum |z_i|^2) in order (ops.cnorm) */
static double cnorm(const double *z, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += z[2 * i] * z[2 * i] + z[2 * i + 1] * z[2 * i + 1];
    return sqrt(s);
}

/* ---------------------------------------------------------------- shaping.py */
static void goal_sample(Tick *t, double now, double *p, double *v)
{
    const int n = t->n;
    double *gs = t->s[O_GOALS], *gp = t->a[A_GF_P], *gv = t->a[A_GF_V];
    if (gs[G_ACTIVE] == 0.0) {
        for (int j = 0; j < n; j++) {
            p[j] = gp[j];
            v[j] = 0.0;
        }
        return;
    }
    double age = now - gs[G_T];
    double h = pymin(pymax(age, 0.0), gs[G_HORIZON]);
    int moving = 0.0 <= age && age < gs[G_HORIZON];
    for (int j = 0; j < n; j++) {
        p[j] = gp[j] + gv[j] * h;
        v[j] = moving ? gv[j] : 0.0;
    }
}

/* _limit: scale the whole vector so that every |x_i| <= lim_i */
static void limit(double *x, const double *lim, int n)
{
    double r = fabs(x[0]) / lim[0];
    for (int j = 1; j < n; j++)
        r = npmax(r, fabs(x[j]) / lim[j]);
    if (r > 1.0) {
        double inv = 1.0 / r;
        for (int j = 0; j < n; j++)
            x[j] *= inv;
    }
}

static void tracker_step(Tick *t, double dt, const double *goal, const double *gv, int hold)
{
    const int n = t->n;
    const double *ts = t->s[O_TRACKER];
    double *x = t->a[A_TR_X], *v = t->a[A_TR_V], *a = t->a[A_TR_A], *jout = t->a[A_TR_J];
    const double *lower = t->a[A_TR_LOWER], *upper = t->a[A_TR_UPPER];
    const double *vmax = t->a[A_TR_VMAX], *amax = t->a[A_TR_AMAX], *jmax = t->a[A_TR_JMAX];
    double vd[MAXN], bound[MAXN], ad[MAXN], j[MAXN];
    if (hold) {
        for (int i = 0; i < n; i++)
            vd[i] = 0.0;
    } else {
        int blocked = 0, any = 0;
        for (int i = 0; i < n; i++) {
            double e = goal[i] - x[i];
            vd[i] = ts[TR_KX] * e + gv[i];
            bound[i] = npmin(sqrt(amax[i] * fabs(e)) + fabs(gv[i]), vmax[i]);
            if (bound[i] > 0.0)
                any = 1;
            else if (vd[i] != 0.0)
                blocked = 1;
        }
        if (blocked) {
            for (int i = 0; i < n; i++)
                vd[i] = 0.0;
        } else if (any) {
            double r = -INFINITY;
            for (int i = 0; i < n; i++)
                if (bound[i] > 0.0)
                    r = r == -INFINITY ? fabs(vd[i]) / bound[i]
                                       : npmax(r, fabs(vd[i]) / bound[i]);
            if (r > 1.0)
                for (int i = 0; i < n; i++)
                    vd[i] /= r;
        }
    }
    /* braking curves at the position limits */
    for (int i = 0; i < n; i++) {
        double hi = sqrt(2.0 * amax[i] * npmax(upper[i] - x[i], 0.0));
        double lo = -sqrt(2.0 * amax[i] * npmax(x[i] - lower[i], 0.0));
        vd[i] = npmin(npmax(vd[i], lo), hi);
    }
    for (int i = 0; i < n; i++)
        ad[i] = ts[TR_KV] * (vd[i] - v[i]);
    limit(ad, amax, n);
    for (int i = 0; i < n; i++)
        j[i] = ts[TR_KA] * (ad[i] - a[i]);
    limit(j, jmax, n);
    for (int i = 0; i < n; i++) {
        double v_stop = v[i] + a[i] * fabs(a[i]) / (2.0 * jmax[i]) + a[i] * dt;
        if (a[i] > 0.0 && v_stop >= vmax[i])
            j[i] = -jmax[i];
        if (a[i] < 0.0 && v_stop <= -vmax[i])
            j[i] = jmax[i];
        jout[i] = j[i];
    }
    double h = 0.5 * dt;
    for (int i = 0; i < n; i++) {
        double an = npmin(npmax(a[i] + dt * j[i], -amax[i]), amax[i]);
        double vn = npmin(npmax(v[i] + h * (a[i] + an), -vmax[i]), vmax[i]);
        double xn = x[i] + h * (v[i] + vn);
        if (xn < lower[i] || xn > upper[i]) {
            xn = npmin(npmax(xn, lower[i]), upper[i]);
            vn = 0.0;
            an = 0.0;
        }
        x[i] = xn;
        v[i] = vn;
        a[i] = an;
    }
}

/* Cerebellum._interpolate: the linear baseline */
/* teleop halt: the time-optimal jerk-limited stop where the motion ends
   (JerkLimitedTracker.brake) */
static void tracker_brake(Tick *t, double dt, double acceleration, double jerk)
{
    const int n = t->n;
    double *x = t->a[A_TR_X], *v = t->a[A_TR_V], *a = t->a[A_TR_A], *jout = t->a[A_TR_J];
    const double *lower = t->a[A_TR_LOWER], *upper = t->a[A_TR_UPPER];
    double vpeak = fabs(v[0]);
    for (int i = 1; i < n; i++)
        vpeak = pymax(vpeak, fabs(v[i]));
    double h = 0.5 * dt;
    for (int i = 0; i < n; i++) {
        double vi = v[i], ai = a[i];
        double r = vpeak > 0.0 ? pymax(fabs(vi) / vpeak, 0.05) : 1.0;
        double am = acceleration * r, jm = jerk * r;
        double s = (vi > 0.0 || (vi == 0.0 && ai < 0.0)) ? 1.0 : -1.0;
        double u = s * vi, b = s * ai;
        double c = jm * dt;
        double disc = c * c + 4.0 * jm * (2.0 * u + dt * b);
        double bn = disc > 0.0 ? 0.5 * (c - sqrt(disc)) : 0.0;
        bn = pymin(pymin(pymax(pymax(bn, b - c), -am), b + c), 0.0);
        double un = u + h * (b + bn);
        if (un <= 0.0) {                    /* stopped: never reverse */
            un = 0.0;
            if (bn >= -c)
                bn = 0.0;
        }
        double xi = x[i] + h * (vi + s * un);
        xi = pymin(pymax(xi, lower[i]), upper[i]);
        x[i] = xi;
        v[i] = s * un;
        a[i] = s * bn;
        jout[i] = s * (bn - b) / dt;
    }
}

static void interpolate(Tick *t, double now, double dt, int holding)
{
    const int n = t->n;
    const double *is = t->s[O_INTAKE];
    double *x = t->a[A_TR_X], *v = t->a[A_TR_V], *a = t->a[A_TR_A];
    const double *from = t->a[A_LIN_FROM], *to = t->a[A_LIN_TO], *vmax = t->a[A_VMAX];
    if (holding) {
        for (int i = 0; i < n; i++)
            v[i] = 0.0;
        return;
    }
    double s = pymin(pymax((now - is[I_LIN_T0]) / is[I_LIN_T], 0.0), 1.0);
    double h = pymax(dt, 1e-6);
    for (int i = 0; i < n; i++) {
        double xn = from[i] + s * (to[i] - from[i]);
        double step = vmax[i] * h;
        xn = npmin(npmax(xn, x[i] - step), x[i] + step);
        v[i] = (xn - x[i]) / h;
        x[i] = xn;
        a[i] = 0.0;
    }
}

/* ---------------------------------------------------------------- estimator.py */
static void estimator_update(Tick *t, double dt, int with_imu)
{
    const int n = t->n;
    double *es = t->s[O_ESTIMATOR], *cs = t->s[O_CORE];
    const double *q = t->a[A_Q], *qd = t->a[A_QD];
    double *te = t->a[A_TWIST_ENC], *f = t->a[A_TWIST_F], *fused = t->a[A_QD_FUSED];
    memcpy(t->a[A_EST_Q], q, sizeof(double) * n);
    es[E_SINCE_KIN] += dt;
    if (es[E_SINCE_KIN] >= es[E_KIN_PERIOD])
        es[E_KIN_DUE] = 1.0;              /* deferred: refresh_kinematics after the tick */
    matvec(t->a[A_IMU_JAC], qd, te, 6, n);
    memcpy(t->a[A_QD_ENC], qd, sizeof(double) * n);
    if (!with_imu) {
        es[E_HAVE_IMU] = 0.0;
        es[E_IMU_USED] = 0.0;
        memcpy(fused, qd, sizeof(double) * n);
        memcpy(f, te, sizeof(double) * 6);
        return;
    }
    double *rot = t->a[A_IMU_ROT];
    if (cs[C_HAS_QUAT] != 0.0) {    /* quat_xyzw_to_matrix */
        const double *qq = t->a[A_QUAT];
        double x = qq[0], y = qq[1], z = qq[2], w = qq[3];
        rot[0] = 1 - 2 * (y * y + z * z);
        rot[1] = 2 * (x * y - z * w);
        rot[2] = 2 * (x * z + y * w);
        rot[3] = 2 * (x * y + z * w);
        rot[4] = 1 - 2 * (x * x + z * z);
        rot[5] = 2 * (y * z - x * w);
        rot[6] = 2 * (x * z - y * w);
        rot[7] = 2 * (y * z + x * w);
        rot[8] = 1 - 2 * (x * x + y * y);
    }
    double *w_meas = t->a[A_W_MEAS], *a_imu = t->a[A_A_IMU], *prev = t->a[A_GYRO_PREV];
    double *d = t->a[A_DTW], *alpha = t->a[A_ALPHA];
    matvec(rot, t->a[A_GYRO], w_meas, 3, 3);
    matvec(rot, t->a[A_ACCEL], a_imu, 3, 3);
    a_imu[2] -= GRAVITY;
    if (es[E_HAVE_IMU] == 0.0) {
        memcpy(f, te, sizeof(double) * 6);
        memcpy(prev, w_meas, sizeof(double) * 3);
        es[E_HAVE_IMU] = 1.0;
    }
    double a = pymin(1.0, es[E_K] * dt);
    for (int i = 0; i < 3; i++) {
        d[i] = a_imu[i] * dt;
        d[3 + i] = w_meas[i] - prev[i];
    }
    for (int i = 0; i < 6; i++) {
        f[i] += d[i];
        d[i] = te[i] - f[i];
        d[i] *= a;
        f[i] += d[i];
    }
    if (dt > 0)
        for (int i = 0; i < 3; i++)
            alpha[i] += 0.2 * ((w_meas[i] - prev[i]) / dt - alpha[i]);
    memcpy(prev, w_meas, sizeof(double) * 3);
    for (int i = 0; i < 6; i++)
        d[i] = f[i] - te[i];
    matvec(t->a[A_IMU_PINV], d, fused, n, 6);
    for (int i = 0; i < n; i++)
        fused[i] += qd[i];
    es[E_IMU_USED] = 1.0;
}

/* ---------------------------------------------------------------- forward_model.py */
static void model_step(Tick *t, double dt, const double *r, const double *rd,
                       const double *tau_ff)
{
    const int n = t->n;
    double *ms = t->s[O_MODEL], *line = t->a[A_LINE];
    int i = (int)ms[M_I];
    double *row = line + (size_t)i * 3 * n;
    for (int j = 0; j < n; j++) {
        row[j] = r[j];
        row[n + j] = rd[j];
        row[2 * n + j] = tau_ff[j];
    }
    i = (i + 1) % t->lines;
    ms[M_I] = i;
    const double *rl = line + (size_t)i * 3 * n, *rdl = rl + n, *ffl0 = rl + 2 * n;
    double *acc = t->a[A_ACC], *rdp = t->a[A_RD_PREV];
    if (dt > 0) {
        double lp = ms[M_ACCEL_LP];
        double k = lp > 0 ? pymin(1.0, dt / lp) : 1.0;
        for (int j = 0; j < n; j++)
            acc[j] += k * ((rdl[j] - rdp[j]) / dt - acc[j]);
    }
    memcpy(rdp, rdl, sizeof(double) * n);
    const double *kp = t->a[A_KP], *kd = t->a[A_KD], *b = t->a[A_B], *bff = t->a[A_B_FF];
    const double *mff = t->a[A_M_FF], *m = t->a[A_M];
    double *q = t->a[A_FM_Q], *qd = t->a[A_FM_QD], *qdd = t->a[A_FM_QDD];
    double *torque = t->a[A_TORQUE];
    int nsub = (int)ms[M_NSUB];
    double h = dt / nsub;
    for (int j = 0; j < n; j++) {
        double ffl = ffl0[j] + mff[j] * acc[j], tau = 0.0;
        for (int k = 0; k < nsub; k++) {
            tau = kp[j] * (rl[j] - q[j]) + kd[j] * (rdl[j] - qd[j]) + bff[j] * rdl[j] + ffl;
            qdd[j] = (tau - b[j] * qd[j]) / m[j];
            qd[j] += h * qdd[j];
            q[j] += h * qd[j];
        }
        torque[j] = tau;
    }
}

/* ---------------------------------------------------------------- adaptive.py */
static void canc_output(Tick *t, double c, double s)
{
    const int n = t->n;
    const double *w = t->a[A_W];
    double *u = t->a[A_U], *ud = t->a[A_UD];
    double wv = -2.0 * M_PI * t->s[O_CANCELLER][K_F_HAT];
    for (int j = 0; j < n; j++) {
        u[j] = w[2 * j] * c - w[2 * j + 1] * s;
        ud[j] = wv * (w[2 * j] * s + w[2 * j + 1] * c);
    }
}

static void canc_scale(Tick *t, double f)
{
    double *w = t->a[A_W];
    for (int j = 0; j < 2 * t->n; j++)
        w[j] *= f;
}

static void canc_fade_weights(Tick *t, double dt)
{
    canc_scale(t, exp(-dt / t->s[O_CANCELLER][K_FADE_TIME]));
}

static void canc_advance(Tick *t, double dt)
{
    double *ks = t->s[O_CANCELLER];
    ks[K_PHI] = ks[K_PHI] + 2.0 * M_PI * ks[K_F_HAT] * dt;
    ks[K_ADVANCED] += dt;
    canc_output(t, cos(ks[K_PHI]), sin(ks[K_PHI]));
}

static void canc_fade(Tick *t, double dt)
{
    double *ks = t->s[O_CANCELLER];
    ks[K_PHI] = ks[K_PHI] + 2.0 * M_PI * ks[K_F_HAT] * pymax(0.0, dt - ks[K_ADVANCED]);
    ks[K_ADVANCED] = 0.0;
    canc_fade_weights(t, dt);
    ks[K_STATE] = 2.0;   /* HOLDING */
    canc_output(t, cos(ks[K_PHI]), sin(ks[K_PHI]));
}

static void canc_reset_weights(Tick *t)
{
    double *ks = t->s[O_CANCELLER];
    memset(t->a[A_W], 0, sizeof(double) * 2 * t->n);
    ks[K_ADAPTING_FOR] = 0.0;
    ks[K_LISTEN] = ks[K_LISTEN_TIME];
    ks[K_R_REF] = 0.0;
    memcpy(t->a[A_CAP], t->a[A_MAX_CORR], sizeof(double) * t->n);
}

/* _phasor_step: Z += b (2 x exp(-i phi) - conj(Z) exp(-2i phi) - Z) */
static void phasor_step(double *z, const double *x, int n, double c, double s, double c2,
                        double s2, double b)
{
    for (int j = 0; j < n; j++) {
        double zr = z[2 * j], zi = z[2 * j + 1];
        double er = x[j] * (2.0 * c) - (zr * c2 - zi * s2) - zr;
        double ei = x[j] * (-2.0 * s) + (zr * s2 + zi * c2) - zi;
        z[2 * j] = zr + b * er;
        z[2 * j + 1] = zi + b * ei;
    }
}

static void canc_monitor(Tick *t, double dt)
{
    const int n = t->n;
    double *ks = t->s[O_CANCELLER];
    const double *w = t->a[A_W], *maxc = t->a[A_MAX_CORR], *cap = t->a[A_CAP];
    ks[K_ADAPTING_FOR] += dt;
    double res = cnorm(t->a[A_R], n), ref = ks[K_R_REF], floor_ = ks[K_MIN_AMPLITUDE];
    int saturated = 0, capped = 0;
    for (int j = 0; j < n; j++) {
        double mag = sqrt(w[2 * j] * w[2 * j] + w[2 * j + 1] * w[2 * j + 1]);
        saturated |= mag >= 0.999 * maxc[j];
        capped |= mag >= 0.999 * cap[j];
    }
    int lng = ks[K_ADAPTING_FOR] > 4.0 * ks[K_ADAPT_TIME];
    int worse = res > 1.5 * ref + floor_;
    int stuck = (lng && res > 0.5 * ref + floor_) || (capped && lng);
    if (worse || saturated || stuck) {
        ks[K_BAD_SINCE] += dt;
        ks[K_GOOD_FOR] = 0.0;
        if (ks[K_BAD_SINCE] > (worse || saturated ? 0.25 : 1.0)) {
            canc_reset_weights(t);
            ks[K_RESETS] += 1.0;
            ks[K_BAD_SINCE] = 0.0;
            int strikes = (int)ks[K_STRIKES];
            if (strikes)
                ks[K_BACKOFF] = ks[K_BACKOFF_TIME] * ldexp(1.0, strikes - 1);
            ks[K_STRIKES] = strikes + 1 < 4 ? strikes + 1 : 4;
        }
    } else {
        ks[K_BAD_SINCE] = 0.0;
        ks[K_GOOD_FOR] += dt;
        if (ks[K_GOOD_FOR] > 10.0)
            ks[K_STRIKES] = 0.0;
    }
}

static void canc_update(Tick *t, double dt, const double *e, int adapt)
{
    const int n = t->n, nbuf = t->nbuf;
    double *ks = t->s[O_CANCELLER], *hs = t->s[O_HIGHPASS];
    ks[K_PHI] = ks[K_PHI] + 2.0 * M_PI * ks[K_F_HAT] * pymax(0.0, dt - ks[K_ADVANCED]);
    ks[K_ADVANCED] = 0.0;
    if (ks[K_PHI] > 1e4)
        ks[K_PHI] = fmod(ks[K_PHI], 2.0 * M_PI);
    ks[K_T] += dt;
    double phi = ks[K_PHI], c = cos(phi), s = sin(phi);
    /* HighPass.step */
    double *x1 = t->a[A_HP_X1], *y1 = t->a[A_HP_Y1], *x2 = t->a[A_HP_X2], *eh = t->a[A_HP_Y];
    if (hs[H_PRIMED] == 0.0) {
        memcpy(x1, e, sizeof(double) * n);
        hs[H_PRIMED] = 1.0;
    }
    double tau = hs[H_TAU], ahp = tau / (tau + dt);
    for (int j = 0; j < n; j++) {
        y1[j] += e[j];
        y1[j] -= x1[j];
        y1[j] *= ahp;
        x1[j] = e[j];
        eh[j] += y1[j];
        eh[j] -= x2[j];
        eh[j] *= ahp;
        x2[j] = y1[j];
    }
    double *ehp = t->a[A_E_HP], *dist = t->a[A_DIST], y[2 * MAXN];
    memcpy(ehp, eh, sizeof(double) * n);
    cmatvec(t->a[A_G], t->a[A_W], y, n);
    for (int j = 0; j < n; j++)
        dist[j] = eh[j] - (y[2 * j] * c - y[2 * j + 1] * s);
    int i = (int)ks[K_IBUF];
    double *buf = t->a[A_BUF], *tbuf = t->a[A_TBUF];
    memcpy(buf + (size_t)i * n, dist, sizeof(double) * n);
    memcpy(buf + (size_t)(i + nbuf) * n, dist, sizeof(double) * n);
    tbuf[i] = tbuf[i + nbuf] = ks[K_T];
    ks[K_IBUF] = (i + 1) % nbuf;
    ks[K_FILLED] = pymin(ks[K_FILLED] + 1, nbuf);
    double b = pymin(1.0, dt / ks[K_PLL_TIME]);
    double c2 = c * c - s * s, s2 = 2.0 * (c * s);
    phasor_step(t->a[A_Z], dist, n, c, s, c2, s2, b);
    phasor_step(t->a[A_R], eh, n, c, s, c2, s2, b);
    double a = pymin(1.0, dt / 0.5), *rms = t->a[A_RES_MS], *dms = t->a[A_DIST_MS];
    for (int j = 0; j < n; j++) {
        rms[j] += a * (eh[j] * eh[j] - rms[j]);
        dms[j] += a * (dist[j] * dist[j] - dms[j]);
    }
    ks[K_SINCE_UPDATE] += dt;
    if (ks[K_SINCE_UPDATE] >= ks[K_UPDATE_PERIOD] && ks[K_T] >= ks[K_WINDOW]) {
        ks[K_SINCE_UPDATE] = 0.0;
        ks[K_TRACK_DUE] = 1.0;            /* track_frequency after the tick */
    }
    int locked = ks[K_LOCKED] != 0.0;
    double *w = t->a[A_W], *cap = t->a[A_CAP];
    if (ks[K_BACKOFF] > 0.0) {
        ks[K_BACKOFF] -= dt;
        ks[K_STATE] = 3.0;                /* BACKOFF */
        canc_fade_weights(t, dt);
    } else if (adapt && locked && ks[K_LISTEN] > 0.0) {
        ks[K_LISTEN] -= dt;
        ks[K_R_REF] = cnorm(t->a[A_R], n);
        double need[MAXN], top = 0.0;
        cmatvec(t->a[A_G_INV], t->a[A_R], y, n);
        for (int j = 0; j < n; j++) {
            need[j] = sqrt(y[2 * j] * y[2 * j] + y[2 * j + 1] * y[2 * j + 1]);
            top = j == 0 ? need[0] : npmax(top, need[j]);
        }
        for (int j = 0; j < n; j++)
            cap[j] = npmin(t->a[A_MAX_CORR][j], 2.0 * need[j] + 0.1 * top);
        ks[K_STATE] = 1.0;                /* ADAPTING */
    } else if (adapt && locked) {
        double k = 2.0 * dt / ks[K_ADAPT_TIME], kc = k * c, kms = k * -s, eps[2 * MAXN];
        for (int j = 0; j < n; j++) {
            eps[2 * j] = eh[j] * kc;
            eps[2 * j + 1] = eh[j] * kms;
        }
        cmatvec(t->a[A_G_INV], eps, y, n);
        for (int j = 0; j < 2 * n; j++)
            w[j] -= y[j];
        canc_scale(t, 1.0 - dt / ks[K_LEAK_TIME]);
        for (int j = 0; j < n; j++) {     /* _bound */
            double mag = sqrt(w[2 * j] * w[2 * j] + w[2 * j + 1] * w[2 * j + 1]);
            if (mag > cap[j]) {
                double f = cap[j] / mag;
                w[2 * j] *= f;
                w[2 * j + 1] *= f;
            }
        }
        ks[K_STATE] = 1.0;                /* ADAPTING */
        canc_monitor(t, dt);
    } else if (!locked) {
        canc_fade_weights(t, dt);
        ks[K_STATE] = 0.0;                /* IDLE */
    } else {
        ks[K_STATE] = 2.0;                /* HOLDING */
    }
    canc_output(t, c, s);
}

/* ---------------------------------------------------------------- core.py */
static void learn(Tick *t, double da, int fresh_j, int fresh_i, int cereb, int adapting)
{
    double *cs = t->s[O_CORE];
    estimator_update(t, da, fresh_i);
    if (!cereb) {
        canc_fade(t, da);
    } else if (fresh_j && fresh_i && cs[C_TREMOR] != 0.0) {   /* stale: the correction fades */
        const int n = t->n;
        model_step(t, da, t->a[A_TR_X], t->a[A_TR_V], t->a[A_REF_EFF]);
        double *err = t->a[A_ERR];
        const double *fused = t->a[A_QD_FUSED], *fqd = t->a[A_FM_QD];
        for (int j = 0; j < n; j++)
            err[j] = fused[j] - fqd[j];
        canc_update(t, da, err, adapting);
    } else {
        canc_fade(t, da);
    }
}

static void run_tick(Tick *t, double now, double dt)
{
    const int n = t->n;
    double *cs = t->s[O_CORE], *is = t->s[O_INTAKE];
    dt = pymin(pymax(dt, 0.0), 5.0 * cs[C_DT_NOMINAL]);
    cs[C_T] = now;
    int fresh_j = now - cs[C_T_JOINTS] <= cs[C_JOINT_TIMEOUT];
    int fresh_i = now - cs[C_T_IMU] <= cs[C_IMU_TIMEOUT];
    int holding = !(fresh_j && fresh_i);
    cs[C_HOLDING] = holding;
    int mode = (int)cs[C_SMOOTHING], cereb = mode == 0;
    if (mode == 1) {
        interpolate(t, now, dt, holding);
    } else if (cereb) {
        double *g = t->a[A_GOAL_P], *gv = t->a[A_GOAL_V];
        int source = (int)is[I_SOURCE];
        int halt = 0;        /* teleop: zero twist or timed out */
        if (source == 0) {                  /* sparse goals */
            goal_sample(t, now, g, gv);
            for (int j = 0; j < n; j++)
                gv[j] *= cs[C_GOAL_FF];
        } else if (source == 2) {           /* teleop twist */
            double *sg = t->a[A_SERVO_GOAL];
            const double *sqd = t->a[A_SERVO_QD];
            int moving = 0;
            for (int j = 0; j < n; j++)
                moving |= sqd[j] != 0.0;
            if (moving && now - is[I_T_TWIST] <= cs[C_TWIST_TIMEOUT]) {
                for (int j = 0; j < n; j++) {
                    sg[j] += sqd[j] * dt;
                    sg[j] = npmin(npmax(sg[j], t->a[A_LOWER][j]), t->a[A_UPPER][j]);
                    gv[j] = sqd[j];
                }
                memcpy(g, sg, sizeof(double) * n);
            } else {
                halt = 1;
            }
        }                                   /* trajectory: sampled by Python */
        if (halt && !holding) {   /* the next twist starts where the halt ends */
            tracker_brake(t, dt, cs[C_HALT_ACC], cs[C_HALT_JERK]);
            memcpy(t->a[A_SERVO_GOAL], t->a[A_TR_X], sizeof(double) * n);
        } else {
            tracker_step(t, dt, g, gv, holding);
        }
    }
    /* health */
    const double *ref = t->a[A_REF_POS], *q = t->a[A_Q];
    double err = 0.0;
    if (fresh_j) {
        err = fabs(ref[0] - q[0]);
        for (int j = 1; j < n; j++)
            err = npmax(err, fabs(ref[j] - q[j]));
    }
    int healthy = err <= cs[C_MAX_TRACK];
    if (!healthy) {
        cs[C_BAD_TRACK] += dt;
        if (cs[C_BAD_TRACK] >= cs[C_RESYNC_TIME] && now - cs[C_REFLEX_T] <= cs[C_REFLEX_WINDOW])
            cs[C_DUE] = (double)((int)cs[C_DUE] | 1);
    } else {
        cs[C_BAD_TRACK] = 0.0;
    }
    int adapting = cs[C_TREMOR] != 0.0 && !holding && healthy && cereb;
    cs[C_ADAPTING] = adapting;
    cs[C_ADAPT_ACC] += dt;
    if (cs[C_ADAPT_ACC] >= cs[C_DT_ADAPT] - 1e-4) {
        double da = cs[C_ADAPT_ACC];
        cs[C_ADAPT_ACC] = 0.0;
        learn(t, da, fresh_j, fresh_i, cereb, adapting);
    } else if (!cereb) {
        canc_fade(t, dt);
    } else {
        canc_advance(t, dt);
    }
    /* the reference */
    const double *x = t->a[A_TR_X], *v = t->a[A_TR_V], *u = t->a[A_U], *ud = t->a[A_UD];
    const double *lower = t->a[A_LOWER], *upper = t->a[A_UPPER], *vmax = t->a[A_VMAX];
    double *rp = t->a[A_REF_POS], *rv = t->a[A_REF_VEL], *re = t->a[A_REF_EFF];
    for (int j = 0; j < n; j++) {
        rp[j] = npmin(npmax(x[j] + u[j], lower[j]), upper[j]);
        rv[j] = npmin(npmax(v[j] + ud[j], -vmax[j]), vmax[j]);
    }
    if (cs[C_INERTIA_FF] != 0.0 && cereb)
        matvec(t->a[A_M_EXTRA], t->a[A_TR_A], re, n, n);
    else
        memset(re, 0, sizeof(double) * n);
    cs[C_SINCE_MODEL] += dt;
    if (cs[C_SINCE_MODEL] >= cs[C_MODEL_PERIOD] && fresh_j && cereb) {
        cs[C_SINCE_MODEL] = 0.0;
        cs[C_DUE] = (double)((int)cs[C_DUE] | 2);
    }
    cs[C_SINCE_SLOW] += dt;
    if (cs[C_SINCE_SLOW] >= 0.05) {
        cs[C_SINCE_SLOW] = 0.0;
        cs[C_DUE] = (double)((int)cs[C_DUE] | 4);
    }
}

static PyObject *tick_tick(Tick *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tick(now, dt)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[0]), dt = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (t->nbound == 0) {
        PyErr_SetString(PyExc_RuntimeError, "Tick: no arrays bound");
        return NULL;
    }
    run_tick(t, now, dt);
    Py_RETURN_NONE;
}

static PyMethodDef tick_methods[] = {
    {"tick", (PyCFunction)(void (*)(void))tick_tick, METH_FASTCALL,
     "tick(now, dt): one tick of Cerebellum._tick_numpy, in C"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject TickType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "neurovla_ros.cerebellum._tick.Tick",
    .tp_basicsize = sizeof(Tick),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tick(slots, arrays, n): the cerebellum's tick in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tick_init,
    .tp_dealloc = (destructor)tick_dealloc,
    .tp_methods = tick_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tick",
                                    "The cerebellum's tick in C.", -1, NULL};

PyMODINIT_FUNC PyInit__tick(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddType(m, &TickType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
