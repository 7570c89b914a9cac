# The TouchDesigner runtime names chopd provides beyond the operator API: the `td` and `tdu`
# modules, `project`, `app`, TouchDesigner's type names, `tdError`, and the errors that explain
# what a headless daemon cannot do. Loaded once by runtime.rs, which passes in the pyo3 classes.
import ast as _ast
import enum as _enum
import hashlib as _hashlib
import math as _math
import os as _os
import platform as _platform
import re as _re
import sys as _sys
import types as _types


class tdError(Exception):
    """TouchDesigner's exception for API misuse; scripts catch it by this name."""


class NotAvailable(tdError, AttributeError):
    """A TouchDesigner member a headless CHOP daemon cannot honour. An AttributeError too, so
    hasattr() answers False instead of raising."""


class MissingGlobal(NameError):
    """A TouchDesigner global chopd does not define."""


HEADLESS = "chopd is headless and has no TouchDesigner UI"

# TouchDesigner globals chopd does not define, with why; any other unknown name stays a plain
# NameError (a typo is not a TouchDesigner feature).
MISSING_GLOBALS = {
    "ui": HEADLESS + "; log with debug() instead",
    "monitors": "chopd is headless: there are no monitors",
    "PaneType": HEADLESS + " (no panes)",
    "JustifyType": HEADLESS + " (no panels)",
    "WindowStartMode": HEADLESS + " (no windows)",
    "licenses": "chopd needs no TouchDesigner licence",
    "families": "chopd runs CHOPs only",
    "sysinfo": "use the os and platform modules",
    "opex": "use op() and test for None",
    "run": "delayed scripts are not supported",
    "runs": "delayed scripts are not supported",
    "var": "TouchDesigner variables are not supported",
    "varExists": "TouchDesigner variables are not supported",
    "varOwner": "TouchDesigner variables are not supported",
    "fetchStamp": "there are no Copy SOP stamps",
    "TDFunctions": "TouchDesigner's helper modules are not shipped with chopd",
    "TDStoreTools": "TouchDesigner's helper modules are not shipped with chopd",
}


def missing_global_message(name):
    return f"'{name}' is a TouchDesigner global chopd does not provide: {MISSING_GLOBALS[name]}"


def explain(exc):
    """Rewrites the message of a NameError for a known TouchDesigner global in place; True when
    it did."""
    if isinstance(exc, NameError) and not isinstance(exc, MissingGlobal):
        name = getattr(exc, "name", None)
        if name in MISSING_GLOBALS:
            exc.args = (missing_global_message(name),)
            return True
    return False


GUI = "chopd is headless: there are no viewers or network editor"
_GRAPH = "the operator graph comes from the config file; edit it and reload (SIGHUP)"
_TOP = "a TOP member; chopd runs CHOPs only and is headless (no TOPs)"
_SOP = "a SOP member; chopd runs CHOPs only and is headless (no SOPs)"

# Operator members TouchDesigner has and chopd cannot: GUI-only, graph edits, other families.
OP_MEMBERS = {}
for _n in ("openViewer closeViewer openParameters openMenu resetViewer viewer activeViewer "
           "display render selected current expose nodeX nodeY nodeWidth nodeHeight "
           "nodeCenterX nodeCenterY color comment dock docked showDocked pickable").split():
    OP_MEMBERS[_n] = GUI
for _n in ("destroy changeType setInputs copyParameters create copy copyOPs loadTox "
           "collapseSelected save saveExternalTox reload").split():
    OP_MEMBERS[_n] = _GRAPH
for _n in ("width height aspect aspectWidth aspectHeight depth pixelFormat cudaMemory "
           "sample loadByteArray numpyArrayDelayed").split():
    OP_MEMBERS[_n] = _TOP
for _n in ("points prims vertices numPoints numPrims numVertices appendPoint appendPoly "
           "appendBezier appendMesh appendNURBS appendCone appendCircle appendSphere "
           "appendTube pointAttribs primAttribs vertexAttribs computeBounds").split():
    OP_MEMBERS[_n] = _SOP
for _n in ("panel panelChildren click interactMouse interactTouch setFocus "
           "panelRoot").split():
    OP_MEMBERS[_n] = "panels and windows need a display; " + HEADLESS
del _n


def not_available(what, why):
    return NotAvailable(f"chopd: {what} is not available: {why}")


def _op_getattr(self, name):
    why = OP_MEMBERS.get(name)
    if why is not None:
        raise not_available(f"{type(self).__name__}.{name}", why)
    raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


# ---------------------------------------------------------------------------------------------
# Type names: real classes where chopd has the object, otherwise classes that nothing is an
# instance of, so annotations load and isinstance() answers as TouchDesigner would.

class _TDType(type):
    def __instancecheck__(cls, obj):
        test = cls.__dict__.get("_test")
        return bool(test and test(obj))

    def __subclasscheck__(cls, sub):
        return type.__subclasscheck__(cls, sub)


def _type_name(obj):
    try:
        return obj.type
    except Exception:
        return None


def _make_types(classes):
    handle, root, dat = classes["OP"], classes["COMP"], classes["DAT"]
    out = {}

    def virtual(name, test=None, base=object):
        c = _TDType(name, (base,), {"__module__": "td", "_test": staticmethod(test) if test else None,
                                    "__doc__": f"TouchDesigner's {name} (a type name in chopd)."})
        out[name] = c
        return c

    virtual("OP", lambda o: isinstance(o, (handle, root, dat)))
    virtual("CHOP", lambda o: isinstance(o, handle))
    for family in ("DAT", "TOP", "SOP", "MAT", "POP"):
        virtual(family)
    virtual("COMP", lambda o: isinstance(o, root))
    for name in ("baseCOMP", "containerCOMP"):
        virtual(name, lambda o: isinstance(o, root))
    for name in ("geometryCOMP cameraCOMP lightCOMP ambientCOMP environmentCOMP windowCOMP "
                 "panelCOMP buttonCOMP sliderCOMP fieldCOMP listCOMP selectCOMP replicatorCOMP "
                 "engineCOMP opviewerCOMP tableCOMP textCOMP annotateCOMP objectCOMP "
                 "actorCOMP bulletsolverCOMP nvidiaflexsolverCOMP").split():
        virtual(name)

    def chop_of(name):
        def test(o):
            t = _type_name(o) if isinstance(o, handle) else None
            return t is not None and (t == name or t + "CHOP" == name)
        return test

    for name in ("scriptCHOP constantCHOP oscinCHOP midiinCHOP infoCHOP nullCHOP selectCHOP "
                 "mathCHOP mergeCHOP lfoCHOP noiseCHOP filterCHOP lagCHOP timerCHOP speedCHOP "
                 "countCHOP logicCHOP triggerCHOP patternCHOP waveCHOP timesliceCHOP "
                 "audiodeviceinCHOP audiodeviceoutCHOP audiofileinCHOP oscoutCHOP midioutCHOP "
                 "keyboardinCHOP mouseinCHOP joystickCHOP parameterCHOP renameCHOP "
                 "shuffleCHOP trailCHOP holdCHOP").split():
        if name.endswith("CHOP") and name != "CHOP":
            virtual(name, chop_of(name))
    for name in ("tableDAT", "textDAT"):
        virtual(name, lambda o, t=name[:-3]: isinstance(o, dat) and _type_name(o) == t)
    for name in ("scriptDAT executeDAT chopexecuteDAT datexecuteDAT "
                 "parameterexecuteDAT panelexecuteDAT opexecuteDAT oscinDAT oscoutDAT "
                 "webclientDAT webserverDAT websocketDAT tcpipDAT udpinDAT udpoutDAT "
                 "serialDAT jsonDAT xmlDAT infoDAT evaluateDAT selectDAT nullDAT mergeDAT "
                 "selectDAT fifoDAT keyboardinDAT midiinDAT").split():
        virtual(name)
    for name in ("scriptTOP nullTOP moviefileinTOP moviefileoutTOP renderTOP glslTOP "
                 "textTOP constantTOP noiseTOP rampTOP compositeTOP levelTOP "
                 "videodeviceinTOP ndiinTOP spoutinTOP syphonspoutinTOP").split():
        virtual(name)
    for name in ("scriptSOP nullSOP boxSOP sphereSOP gridSOP lineSOP circleSOP "
                 "mergeSOP transformSOP").split():
        virtual(name)
    for name in "constantMAT phongMAT pbrMAT glslMAT lineMAT pointspriteMAT wireframeMAT".split():
        virtual(name)
    for name in "scriptPOP nullPOP".split():
        virtual(name)
    for name in ("Connector Run Runs Monitors Monitor UI Panes Pane NetworkEditor "
                 "Undo Preferences Options Licenses License SysInfo Families Attribute "
                 "Point Prim Vertex Peer ParChange Body ArcBall Camera Timecode "
                 "Quaternion Matrix FileInfo ParMenu TableMenu Dependency").split():
        virtual(name)
    # The classes chopd really has: isinstance() and annotations see the real objects.
    for name in ("Channel", "Par", "ParGroup", "Page", "ParCollection", "timeCOMP", "AbsTime",
                 "DAT", "Cell", "MOD"):
        if name in classes:
            out[name] = classes[name]
    return out


class ParMode(_enum.Enum):
    """How a parameter gets its value (TouchDesigner's ParMode)."""
    CONSTANT = 0
    EXPRESSION = 1
    EXPORT = 2
    BIND = 3


# ---------------------------------------------------------------------------------------------
# tdu

def clamp(inputVal, min, max):
    """inputVal limited to [min, max]; any comparable type."""
    if inputVal < min:
        return min
    if inputVal > max:
        return max
    return inputVal


def remap(inputVal, fromMin, fromMax, toMin, toMax):
    """inputVal mapped linearly from [fromMin, fromMax] to [toMin, toMax], without clamping."""
    return toMin + (inputVal - fromMin) * (toMax - toMin) / (fromMax - fromMin)


def rand(seed):
    """A float in [0, 1) that depends only on seed: equal numbers give equal values, strings
    and other objects go by their text, operators by their path."""
    if isinstance(seed, str):
        key = "s:" + seed
    elif isinstance(seed, bool):
        key = "n:" + repr(float(seed))
    else:
        path = getattr(seed, "path", None) if not isinstance(seed, (int, float)) else None
        if isinstance(path, str):
            key = "s:" + path
        else:
            try:
                key = "n:" + repr(float(seed))
            except (TypeError, ValueError):
                key = "s:" + str(seed)
    h = _hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


def _tail(s):
    return str(s).rsplit("/", 1)[-1]


def digits(s):
    """The number in the last run of digits after the last '/', or None."""
    runs = _re.findall(r"[0-9]+", _tail(s))
    return int(runs[-1]) if runs else None


def base(s):
    """The part after the last '/' that comes before any digit."""
    return _re.match(r"[^0-9]*", _tail(s)).group(0)


_TOKEN = _re.compile(r'"([^"]*)"|\'([^\']*)\'|(\S+)')


def split(string, eval=False):
    """Splits on whitespace; single or double quotes group words. With eval, unquoted words
    that are Python literals (numbers, True, None, lists) become those values."""
    out = []
    for m in _TOKEN.finditer(str(string)):
        dq, sq, word = m.groups()
        if word is None:
            out.append(dq if dq is not None else sq)
        elif eval:
            try:
                out.append(_ast.literal_eval(word))
            except (ValueError, SyntaxError):
                out.append(word)
        else:
            out.append(word)
    return out


def tryExcept(func1, func2OrValue):
    """func1(); if it raises, func2OrValue() when callable, else func2OrValue."""
    try:
        return func1()
    except Exception:
        return func2OrValue() if callable(func2OrValue) else func2OrValue


def _make_match(mask):
    def match(pattern, inputList, caseSensitive=True):
        """The items of inputList whose text matches pattern (TouchDesigner pattern rules:
        * ? [abc] [1-5], space-separated alternatives, ^ excludes)."""
        items = list(inputList)
        keep = mask(str(pattern), [str(i) for i in items], bool(caseSensitive))
        return [i for i, k in zip(items, keep) if k]
    return match


class Dependency:
    """A value holder (TouchDesigner's tdu.Dependency): a Script CHOP whose onCook read .val
    cooks again when the value is set or .modified() is called (not when its own cook did
    that). Indexing, len(), casts and arithmetic read .val; .peekVal reads without recording."""

    _Stamp = None  # set by setup()

    def __init__(self, value=None):
        self._val = value
        self._stamp = Dependency._Stamp()
        self.callbacks = []

    @property
    def val(self):
        self._stamp.read()
        return self._val

    @val.setter
    def val(self, value):
        self.setVal(value)

    @property
    def peekVal(self):
        return self._val

    @property
    def ops(self):
        return []

    def setVal(self, value, setInfo=None):
        prev, self._val = self._val, value
        self._stamp.changed()
        self._notify(prev, setInfo)

    def modified(self):
        self._stamp.changed()
        self._notify(self._val, None)

    def _notify(self, prev, setInfo):
        for cb in list(self.callbacks):
            cb({"dependency": self, "prevVal": prev, "callback": cb, "setInfo": setInfo})

    def __getitem__(self, key):
        return self.val[key]

    def __setitem__(self, key, value):
        self._val[key] = value
        self.modified()

    def __delitem__(self, key):
        del self._val[key]
        self.modified()

    def __len__(self):
        return len(self.val)

    def __iter__(self):
        return iter(self.val)

    def __contains__(self, item):
        return item in self.val

    def __bool__(self):
        return bool(self.val)

    def __float__(self):
        return float(self.val)

    def __int__(self):
        return int(self.val)

    def __index__(self):
        return self.val.__index__()

    def __str__(self):
        return str(self.val)

    def __repr__(self):
        return f"Dependency({self.val!r})"

    def __eq__(self, other):
        return self.val == (other.peekVal if isinstance(other, Dependency) else other)

    def __lt__(self, other):
        return self.val < other

    def __le__(self, other):
        return self.val <= other

    def __gt__(self, other):
        return self.val > other

    def __ge__(self, other):
        return self.val >= other

    __hash__ = None

    def __add__(self, o):
        return self.val + o

    def __radd__(self, o):
        return o + self.val

    def __sub__(self, o):
        return self.val - o

    def __rsub__(self, o):
        return o - self.val

    def __mul__(self, o):
        return self.val * o

    def __rmul__(self, o):
        return o * self.val

    def __truediv__(self, o):
        return self.val / o

    def __rtruediv__(self, o):
        return o / self.val


def _components(args, n, default, what):
    if len(args) == 1 and not isinstance(args[0], (int, float)):
        args = tuple(args[0])
    if len(args) == 0:
        return list(default)
    if len(args) != n:
        raise TypeError(f"{what} takes 0 or {n} numbers (or one sequence of {n}), got {len(args)}")
    return [float(a) for a in args]


class _Vec3:
    __slots__ = ("_v",)

    def __init__(self, *args):
        self._v = _components(args, 3, (0.0, 0.0, 0.0), type(self).__name__)

    x = property(lambda s: s._v[0], lambda s, v: s._v.__setitem__(0, float(v)))
    y = property(lambda s: s._v[1], lambda s, v: s._v.__setitem__(1, float(v)))
    z = property(lambda s: s._v[2], lambda s, v: s._v.__setitem__(2, float(v)))

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self._v[i]

    def __setitem__(self, i, v):
        self._v[i] = float(v)

    def __iter__(self):
        return iter(self._v)

    def __eq__(self, other):
        return isinstance(other, _Vec3) and self._v == other._v

    __hash__ = None

    def __repr__(self):
        return f"{type(self).__name__}({self._v[0]!r}, {self._v[1]!r}, {self._v[2]!r})"

    def _new(self, cls, vals):
        return cls(*vals)

    def __neg__(self):
        return type(self)(*(-a for a in self._v))

    def __mul__(self, k):
        if isinstance(k, _Vec3):
            return type(self)(*(a * b for a, b in zip(self._v, k._v)))
        return type(self)(*(a * k for a in self._v))

    __rmul__ = __mul__

    def __truediv__(self, k):
        if isinstance(k, _Vec3):
            return type(self)(*(a / b for a, b in zip(self._v, k._v)))
        return type(self)(*(a / k for a in self._v))

    def copy(self):
        return type(self)(*self._v)

    def length(self):
        return _math.sqrt(self.lengthSquared())

    def lengthSquared(self):
        return sum(a * a for a in self._v)

    def dot(self, o):
        return sum(a * b for a, b in zip(self._v, o))

    def distance(self, o):
        return _math.sqrt(sum((a - b) ** 2 for a, b in zip(self._v, o)))

    def lerp(self, o, t):
        return type(self)(*(a + (b - a) * t for a, b in zip(self._v, o)))


class Vector(_Vec3):
    """A direction (x, y, z); numpy-free."""
    __slots__ = ()

    def __add__(self, o):
        if isinstance(o, Position):
            return Position(*(a + b for a, b in zip(self._v, o._v)))
        if isinstance(o, _Vec3):
            return Vector(*(a + b for a, b in zip(self._v, o._v)))
        return Vector(*(a + o for a in self._v))

    __radd__ = __add__

    def __sub__(self, o):
        if isinstance(o, _Vec3):
            return Vector(*(a - b for a, b in zip(self._v, o._v)))
        return Vector(*(a - o for a in self._v))

    def __rsub__(self, o):
        return Vector(*(o - a for a in self._v))

    def normalize(self):
        n = self.length()
        if n:
            self._v = [a / n for a in self._v]

    def cross(self, o):
        a, b = self._v, list(o)
        return Vector(a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])

    def angle(self, o):
        """The angle to o in degrees."""
        d = self.length() * Vector(o).length()
        if not d:
            return 0.0
        return _math.degrees(_math.acos(max(-1.0, min(1.0, self.dot(o) / d))))

    def project(self, o):
        o = Vector(o)
        d = o.lengthSquared()
        return o * (self.dot(o) / d) if d else Vector()

    def reflect(self, n):
        n = Vector(n)
        return self - n * (2 * self.dot(n))


class Position(_Vec3):
    """A point (x, y, z); numpy-free. Position - Position is a Vector."""
    __slots__ = ()

    def __add__(self, o):
        if isinstance(o, _Vec3):
            return Position(*(a + b for a, b in zip(self._v, o._v)))
        return Position(*(a + o for a in self._v))

    __radd__ = __add__

    def __sub__(self, o):
        if isinstance(o, Position):
            return Vector(*(a - b for a, b in zip(self._v, o._v)))
        if isinstance(o, _Vec3):
            return Position(*(a - b for a, b in zip(self._v, o._v)))
        return Position(*(a - o for a in self._v))

    def __rsub__(self, o):
        return Position(*(o - a for a in self._v))


class Color:
    """(r, g, b, a) floats; numpy-free. Alpha defaults to 1."""
    __slots__ = ("_v",)

    def __init__(self, *args):
        if len(args) == 1 and not isinstance(args[0], (int, float)):
            args = tuple(args[0])
        if len(args) == 3:
            args = args + (1.0,)
        self._v = _components(args, 4, (0.0, 0.0, 0.0, 1.0), "Color")

    r = property(lambda s: s._v[0], lambda s, v: s._v.__setitem__(0, float(v)))
    g = property(lambda s: s._v[1], lambda s, v: s._v.__setitem__(1, float(v)))
    b = property(lambda s: s._v[2], lambda s, v: s._v.__setitem__(2, float(v)))
    a = property(lambda s: s._v[3], lambda s, v: s._v.__setitem__(3, float(v)))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self._v[i]

    def __setitem__(self, i, v):
        self._v[i] = float(v)

    def __iter__(self):
        return iter(self._v)

    def __eq__(self, other):
        return isinstance(other, Color) and self._v == other._v

    __hash__ = None

    def __repr__(self):
        return "Color({!r}, {!r}, {!r}, {!r})".format(*self._v)

    def _op(self, o, f):
        if isinstance(o, Color):
            return Color(*(f(a, b) for a, b in zip(self._v, o._v)))
        return Color(*(f(a, o) for a in self._v))

    def __add__(self, o):
        return self._op(o, lambda a, b: a + b)

    __radd__ = __add__

    def __sub__(self, o):
        return self._op(o, lambda a, b: a - b)

    def __mul__(self, o):
        return self._op(o, lambda a, b: a * b)

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._op(o, lambda a, b: a / b)

    def copy(self):
        return Color(*self._v)


def _refused(name, why):
    def refused(*args, **kwargs):
        raise not_available(name, why)
    refused.__name__ = name.rsplit(".", 1)[-1]
    return refused


# ---------------------------------------------------------------------------------------------
# project and app

class Project:
    """The running session: the config file stands for TouchDesigner's .toe."""

    def __init__(self, info):
        self._info = info
        self.paths = {}

    name = property(lambda s: s._info()[0], doc="The config file's name.")
    folder = property(lambda s: s._info()[1], doc="The config file's directory.")

    @property
    def cookRate(self):
        return self._info()[2]

    @cookRate.setter
    def cookRate(self, value):
        raise tdError(
            f"chopd: project.cookRate cannot be set (to {value!r}): the clock rate is the "
            "config's `rate`; change it there and reload (SIGHUP)")

    @property
    def realTime(self):
        return True

    @realTime.setter
    def realTime(self, value):
        if not value:
            raise tdError("chopd: project.realTime cannot be turned off: chopd always runs in "
                          "real time and drops frames to keep up")

    save = _refused("project.save", "chopd has no .toe file; its state is the config file")
    load = _refused("project.load", "chopd has no .toe file; its state is the config file")
    quit = _refused("project.quit", "a script cannot end chopd; stop the service instead")

    def __getattr__(self, name):
        raise not_available(f"project.{name}", "chopd has no .toe file, windows or perform mode")

    def __repr__(self):
        return f"project(name={self.name!r}, folder={self.folder!r})"


class App:
    """The program: chopd, not TouchDesigner."""

    def __init__(self, version):
        self.product = "chopd"
        self.version = version
        self.build = f"chopd {version}"
        self.osName = "Linux"
        self.osVersion = _platform.release()
        self.processId = _os.getpid()
        self.architecture = _platform.machine()
        self.pythonExecutable = _sys.executable

    @property
    def power(self):
        return True

    @power.setter
    def power(self, value):
        if not value:
            raise tdError("chopd: app.power cannot be turned off: stop the service instead")

    def __getattr__(self, name):
        raise not_available(f"app.{name}", "chopd is not TouchDesigner and has no install folders or UI")

    def __repr__(self):
        return f"app(product='chopd', version={self.version!r})"


# ---------------------------------------------------------------------------------------------
# TDJSON: the part of TouchDesigner's parameter-JSON module that Component Editor code calls
# in onSetupParameters (`TDJSON.addParametersFromJSONOp(scriptOp, parData, destroyOthers=True)`).

_PAR_ATTRS = ("default", "min", "max", "normMin", "normMax", "clampMin", "clampMax",
              "startSection", "readOnly")


class TDJSON:
    """TouchDesigner's TDJSON, as far as parameter set-up needs it."""

    @staticmethod
    def textToJSON(text, showErrors=False):
        import json
        try:
            return json.loads(text)
        except ValueError:
            if showErrors:
                raise
            return None

    @staticmethod
    def addParameterFromJSONDict(comp, jsonDict, replace=True, setValues=True,
                                 ignoreAttrErrors=False, fixParNames=True, setBuiltIns=False):
        d = dict(jsonDict)
        style = d.get("style", "Float")
        name = d["name"]
        page = comp.appendCustomPage(d.get("page", "Custom"))
        append = getattr(page, "append" + style, None)
        if append is None:
            raise tdError(f"TDJSON: parameter {name!r} has style {style!r}, which chopd lacks")
        label = d.get("label", name)
        if style in ("Float", "Int"):
            group = append(name, label=label, size=d.get("size", 1), replace=replace)
        else:
            group = append(name, label=label, replace=replace)
        members = [group[i] for i in range(len(group))]

        def member_value(v, i):
            return v[min(i, len(v) - 1)] if isinstance(v, (list, tuple)) else v

        for i, p in enumerate(members):
            if "menuNames" in d:
                p.menuNames = list(d["menuNames"])
            if "menuLabels" in d:
                p.menuLabels = list(d["menuLabels"])
            for attr in _PAR_ATTRS:
                if attr in d:
                    try:
                        setattr(p, attr, member_value(d[attr], i))
                    except Exception:
                        if not ignoreAttrErrors:
                            raise
            if setValues:
                for key in ("val", "value"):
                    if key in d:
                        p.val = member_value(d[key], i)
        return members

    @staticmethod
    def addParametersFromJSONOp(comp, jsonData, replace=True, setValues=True,
                                destroyOthers=False, newAtEnd=True, fixParNames=True):
        if destroyOthers:
            comp.destroyCustomPars()
        made = []
        pages = jsonData.items() if isinstance(jsonData, dict) else [(None, jsonData)]
        for page_name, pars in pages:
            for d in (pars.values() if isinstance(pars, dict) else pars):
                d = dict(d)
                if page_name is not None:
                    d.setdefault("page", page_name)
                made.extend(TDJSON.addParameterFromJSONDict(comp, d, replace, setValues))
        return made


class _TDModules:
    """`op.TDModules`: TouchDesigner's helper modules, as `op.TDModules.mod.TDJSON`."""

    class mod:
        TDJSON = TDJSON


TDModules = _TDModules()


def setup(classes, funcs, mask, project_info, stamp, version):
    """Builds the `td` and `tdu` modules (into sys.modules) and patches the operator classes
    with the explanations of what chopd lacks; returns the names each callbacks module gets."""
    Dependency._Stamp = stamp
    tdu = _types.ModuleType("tdu", "TouchDesigner's utility module, as far as chopd has it.")
    for f in (clamp, remap, rand, digits, base, split, tryExcept):
        setattr(tdu, f.__name__, f)
    tdu.match = _make_match(mask)
    tdu.Dependency, tdu.Vector, tdu.Position, tdu.Color = Dependency, Vector, Position, Color
    tdu.forceCrash = _refused("tdu.forceCrash", "it is refused in a service daemon")

    def tdu_getattr(name):
        if name in ("ArcBall", "Camera"):
            raise not_available(f"tdu.{name}", GUI)
        raise AttributeError(f"module 'tdu' has no attribute '{name}' in chopd")

    tdu.__getattr__ = tdu_getattr

    td = _types.ModuleType("td", "TouchDesigner's globals, as far as chopd has them.")
    names = {}
    names.update(_make_types(classes))
    names["Dependency"] = Dependency
    names.update(funcs)
    names.update(tdError=tdError, ParMode=ParMode, tdu=tdu,
                 project=Project(project_info), app=App(version),
                 isMainThread=lambda: True, passive=lambda op: op)
    for k, v in names.items():
        setattr(td, k, v)
    td.__all__ = sorted(names)

    def td_getattr(name):
        if name in MISSING_GLOBALS:
            raise AttributeError(missing_global_message(name))
        raise AttributeError(f"module 'td' has no attribute '{name}'")

    td.__getattr__ = td_getattr
    _sys.modules["td"] = td
    _sys.modules["tdu"] = tdu
    tdjson = _types.ModuleType("TDJSON", TDJSON.__doc__)
    for k in ("textToJSON", "addParameterFromJSONDict", "addParametersFromJSONOp"):
        setattr(tdjson, k, getattr(TDJSON, k))
    _sys.modules["TDJSON"] = tdjson
    for cls in (classes["OP"], classes["COMP"], classes["DAT"]):
        cls.__getattr__ = _op_getattr
    return names
