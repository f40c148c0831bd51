/* rxalpaca._speedups: the timestamp read path in C (issue #12).
 *
 * `MarketRecord.timestamp_ns` runs once per record a strategy reads. In Python 3.11 the read
 * costs about 1.2x the fastest plain-Python conversion even with a cache of proved seconds
 * (docs/benchmarks.md, "Reading timestamps"): a property read is not specialised and every
 * byte operation is an object. Here the two forms Alpaca sends are parsed in place from the
 * record's buffer and fully validated:
 *
 *   JSON         '"YYYY-MM-DDTHH:MM:SSZ"' or '"YYYY-MM-DDTHH:MM:SS.' 1-9 digits 'Z"'
 *   MessagePack  timestamp 32 (d6 ff + u32 seconds) and timestamp 64 (d7 ff + u64)
 *
 * Anything else -- zone offsets, lower-case 't'/'z', escapes, ten or more digits, an
 * impossible date, an instant outside what an int64 of ns holds, a hand-built record's int
 * or datetime -- goes to the Python fallback given to `install()`, which is the full parser
 * and raises the documented ValueError. So this module accepts a strict subset of what
 * `timestamps.parse_time_ns` accepts and returns exactly its value there
 * (tests/test_speedups.py checks both against each other).
 *
 * Optional: setuptools builds it when a C compiler is present (`optional=True`); without it,
 * or with RXALPACA_NO_SPEEDUPS=1 set, rxalpaca runs the pure-Python read path. Holds no
 * state besides the two fallbacks, so any thread may call it; it never releases the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>

static PyObject *fallback_ns = NULL; /* record -> int (raises ValueError) */
static PyObject *fallback_dt = NULL; /* record -> datetime */
static PyObject *str_raw_time = NULL;

static const int64_t FRACTION_SCALE[10] = {
    1000000000, 100000000, 10000000, 1000000, 100000, 10000, 1000, 100, 10, 1};

/* Seconds within which seconds * 1e9 + 999999999 fits an int64 (years 1685-2255). */
#define MAX_ABS_SECONDS INT64_C(9000000000)

static int
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
    static const int DAYS[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : DAYS[m];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The date of a day count since 1970-01-01 (days >= 0; H. Hinnant's civil_from_days). */
static void
civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    const int64_t era = z / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    const int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const int64_t m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(yoe + era * 400 + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

/* `count` ASCII digits at p as a number, or -1 if any byte is not 0-9. */
static int64_t
digits(const unsigned char *p, int count)
{
    int64_t value = 0;
    for (int i = 0; i < count; i++) {
        const unsigned int digit = (unsigned int)p[i] - '0';
        if (digit > 9) {
            return -1;
        }
        value = value * 10 + digit;
    }
    return value;
}

/* 1 and *out = ns for the canonical forms above; 0 for anything else (the caller falls back). */
static int
fast_ns(const unsigned char *p, Py_ssize_t n, int64_t *out)
{
    if (n >= 22 && n <= 32 && n != 23 && p[0] == '"') {
        if (p[5] != '-' || p[8] != '-' || p[11] != 'T' || p[14] != ':' || p[17] != ':' ||
            p[n - 2] != 'Z' || p[n - 1] != '"') {
            return 0;
        }
        const int64_t year = digits(p + 1, 4), month = digits(p + 6, 2), day = digits(p + 9, 2);
        const int64_t hour = digits(p + 12, 2), minute = digits(p + 15, 2);
        const int64_t second = digits(p + 18, 2);
        if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
            minute < 0 || minute > 59 || second < 0 || second > 59 ||
            day > days_in_month((int)year, (int)month)) {
            return 0;
        }
        int64_t fraction = 0;
        if (n > 22) { /* '.' and k = n - 23 digits */
            const int k = (int)(n - 23);
            if (p[20] != '.' || (fraction = digits(p + 21, k)) < 0) {
                return 0;
            }
            fraction *= FRACTION_SCALE[k];
        }
        const int64_t seconds =
            days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
        if (seconds > MAX_ABS_SECONDS || seconds < -MAX_ABS_SECONDS) {
            return 0;
        }
        *out = seconds * 1000000000 + fraction;
        return 1;
    }
    if (n == 10 && p[0] == 0xD7 && p[1] == 0xFF) { /* timestamp 64: 30-bit ns, 34-bit s */
        uint64_t value = 0;
        for (int i = 2; i < 10; i++) {
            value = (value << 8) | p[i];
        }
        const int64_t nanos = (int64_t)(value >> 34);
        const int64_t seconds = (int64_t)(value & ((UINT64_C(1) << 34) - 1));
        if (nanos >= 1000000000 || seconds > MAX_ABS_SECONDS) {
            return 0;
        }
        *out = seconds * 1000000000 + nanos;
        return 1;
    }
    if (n == 6 && p[0] == 0xD6 && p[1] == 0xFF) { /* timestamp 32: unsigned seconds */
        const int64_t seconds = ((int64_t)p[2] << 24) | (p[3] << 16) | (p[4] << 8) | p[5];
        *out = seconds * 1000000000;
        return 1;
    }
    return 0;
}

/* 1 and *out for a record whose raw time is a buffer of a canonical form; 0 otherwise
 * (no exception set); -1 on an error reading the attribute. */
static int
record_fast_ns(PyObject *record, int64_t *out)
{
    PyObject *raw = PyObject_GetAttr(record, str_raw_time);
    if (raw == NULL) {
        return -1;
    }
    int ok = 0;
    if (PyObject_CheckBuffer(raw)) {
        Py_buffer view;
        if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) == 0) {
            ok = fast_ns((const unsigned char *)view.buf, view.len, out);
            PyBuffer_Release(&view);
        }
        else {
            PyErr_Clear(); /* the fallback reports what is wrong */
        }
    }
    Py_DECREF(raw);
    return ok;
}

static PyObject *
not_installed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "rxalpaca._speedups.install() was not called");
    return NULL;
}

PyDoc_STRVAR(record_time_ns_doc,
             "record_time_ns(record) -> int\n\n"
             "``record.timestamp_ns``: exact ns of ``record.raw_time``.");

static PyObject *
record_time_ns(PyObject *Py_UNUSED(module), PyObject *record)
{
    int64_t ns;
    const int ok = record_fast_ns(record, &ns);
    if (ok < 0) {
        return NULL;
    }
    if (ok) {
        return PyLong_FromLongLong(ns);
    }
    return fallback_ns ? PyObject_CallOneArg(fallback_ns, record) : not_installed();
}

PyDoc_STRVAR(record_datetime_doc,
             "record_datetime(record) -> datetime\n\n"
             "``record.timestamp``: ``record.timestamp_ns`` floored to the microsecond, UTC.");

static PyObject *
record_datetime(PyObject *Py_UNUSED(module), PyObject *record)
{
    int64_t ns;
    const int ok = record_fast_ns(record, &ns);
    if (ok < 0) {
        return NULL;
    }
    if (!ok || ns < 0) { /* before 1970: the fallback floors the same way, in Python */
        return fallback_dt ? PyObject_CallOneArg(fallback_dt, record) : not_installed();
    }
    const int64_t micros = ns / 1000;
    const int64_t day_micros = INT64_C(86400000000);
    int year, month, day;
    civil_from_days(micros / day_micros, &year, &month, &day);
    int64_t rest = micros % day_micros;
    const int microsecond = (int)(rest % 1000000);
    rest /= 1000000;
    return PyDateTimeAPI->DateTime_FromDateAndTime(
        year, month, day, (int)(rest / 3600), (int)(rest / 60 % 60), (int)(rest % 60),
        microsecond, PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

PyDoc_STRVAR(install_doc,
             "install(time_ns, datetime_view) -> None\n\n"
             "The Python fallbacks for what the fast path does not take: ``time_ns(record)``\n"
             "(the full parser, which raises) and ``datetime_view(record)``.");

static PyObject *
install(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "install() takes two callables");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(fallback_ns, args[0]);
    Py_XSETREF(fallback_dt, args[1]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(buffer_time_ns_doc,
             "buffer_time_ns(raw) -> int | None\n\n"
             "The fast path alone on a buffer: exact ns, or None where the full parser must\n"
             "decide (tests compare it with ``parse_time_ns``).");

static PyObject *
buffer_time_ns(PyObject *Py_UNUSED(module), PyObject *raw)
{
    Py_buffer view;
    if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int64_t ns;
    const int ok = fast_ns((const unsigned char *)view.buf, view.len, &ns);
    PyBuffer_Release(&view);
    if (ok) {
        return PyLong_FromLongLong(ns);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"record_time_ns", record_time_ns, METH_O, record_time_ns_doc},
    {"record_datetime", record_datetime, METH_O, record_datetime_doc},
    {"buffer_time_ns", buffer_time_ns, METH_O, buffer_time_ns_doc},
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rxalpaca._speedups",
    .m_doc = "The timestamp read path in C (optional; rxalpaca.timestamps falls back).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    str_raw_time = PyUnicode_InternFromString("raw_time");
    if (str_raw_time == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
