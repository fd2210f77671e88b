"""The restricted expression language of `formula` (not a node type).

An expression is one Python expression made of: numbers, texts, True, False, None,
names, `+ - * / // % **`, comparisons, `and or not`, `a if cond else b`,
`x['key']` and `x[0]` with a constant index, and calls of the functions in
`FUNCTIONS`. `check_expression` refuses everything else before anything runs
(attributes, hence `__class__` tricks; lambdas; comprehensions; literals of lists,
dicts, sets and tuples; f-strings; `:=`; names starting with `_`; a call with the
wrong number of arguments; a number beyond the float range).

What is left is parsed once and run by asteval's node handlers, with our own dispatch,
operators and calls. Every operation that could make a large value is bounded before
it is computed, so that an evaluation takes microseconds or fails with an
EvaluationError that says why:

- an integer that an operator takes or makes is within ±2**1024 (`MAX_INT_BITS`, the
  range of a float, about ±1.8e308); `**` is refused before it is computed when its
  result would be larger, and so is an exponent above `MAX_EXPONENT`;
- a text that `+`, `*` or `%` makes has at most `MAX_TEXT` characters;
- a list that `+` or `*` makes, or a list or mapping that `in`, a comparison, min, max
  or clamp goes through, has at most `MAX_ITEMS` items (as has the one text of min(s));
- `text % value` formats one number, text, True, False or None, or a mapping for
  `%(key)s` fields: at most `MAX_FIELDS` fields, widths and precisions of at most
  `MAX_WIDTH`, no `*`, and a result that could be longer than `MAX_TEXT` is refused;
- `round(x, ndigits)` takes ndigits within ±`MAX_NDIGITS`;
- a numeric result beyond ±`MAX_MAGNITUDE`, inf or nan is an error.

With at most `MAX_LENGTH` characters and `MAX_DEPTH` levels, the dearest expression
takes a few milliseconds (tests/unit/nodes/test_formula_property.py). Not bounded,
being linear at C speed or constant time: comparing texts or numbers, `in` on a text
or a mapping, the items of nested lists.

A part without names (`round(1, -10**7)`, `10**10**10`) is computed once when the
expression is compiled, so a part that always fails is refused by `validate`, as is a
constant ndigits out of range (`round(x, -10**8)`).
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from asteval import Interpreter

from flowengine.errors import ConfigError
from flowengine.model import JsonValue, SourceMark
from nodes.logic.bounded import (
    ARITY,
    BEYOND,
    BIG,
    BINARY,
    COMPARE,
    CONSTANT_ARGS,
    FUNCTIONS,
    EvaluationError,
    check_lists,
    kind,
    shorten,
    show,
)

__all__ = ["FUNCTIONS", "EvaluationError", "Expression", "ExpressionError", "soc_formula",
           "suggest"]

MAX_MAGNITUDE = 1e15  # a numeric result beyond this is an error
MAX_DEPTH = 100
MAX_LENGTH = 2000


# -- the check before anything runs --------------------------------------------------------

_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_OPERATORS = {ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|",
              ast.BitXor: "^", ast.MatMult: "@"}
_REFUSED = {ast.Lambda: "lambda", ast.ListComp: "a list comprehension",
            ast.SetComp: "a set comprehension", ast.DictComp: "a dict comprehension",
            ast.GeneratorExp: "a generator expression", ast.List: "a list literal",
            ast.Tuple: "a tuple", ast.Dict: "a dict literal", ast.Set: "a set literal",
            ast.Starred: "*unpacking", ast.JoinedStr: "an f-string", ast.Slice: "a slice",
            ast.NamedExpr: "assignment (:=)", ast.Await: "await", ast.Yield: "yield"}
_HINT = ("use numbers, input names, + - * / // % **, comparisons, and/or/not, "
         "`a if cond else b` and the functions " + ", ".join(FUNCTIONS))


class ExpressionError(ValueError):
    """An expression uses something the sandbox does not allow."""

    def __init__(self, message: str, hint: str | None = _HINT) -> None:
        super().__init__(message)
        self.hint = hint


def suggest(name: str, choices: Collection[str]) -> str | None:
    """'did you mean 'x'?', ignoring case (so 'SOCC' finds 'soc')."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'?" if close else None


def check_expression(text: str) -> tuple[str, ...]:
    """The names `text` uses, in order of first use; ExpressionError if not allowed."""
    return _parse_checked(text)[1]


def _parse_checked(text: str) -> tuple[ast.expr, tuple[str, ...]]:
    """The tree of `text` and the names it uses; ExpressionError if not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        module = ast.parse(text, mode="exec")
    except SyntaxError as exc:
        raise ExpressionError(f"the expression does not parse: {exc.msg} "
                              f"(column {exc.offset})", hint=None) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"the expression does not parse: {exc}", hint=None) from None
    body = module.body
    if len(body) != 1 or not isinstance(body[0], ast.Expr):
        found = "nothing" if not body else "several statements" if len(body) > 1 \
            else f"a statement ({type(body[0]).__name__.lower()})"
        raise ExpressionError(f"the expression must be one expression, found {found}")
    names: dict[str, None] = {}
    _check(body[0].value, names, 0)
    return body[0].value, tuple(names)


def _check(node: ast.AST, names: dict[str, None], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} levels deep")
    children: Iterable[ast.AST] = ()
    if isinstance(node, ast.Constant):
        _check_constant(node.value)
    elif isinstance(node, ast.Name):
        _check_name(node.id)
        if node.id in FUNCTIONS:
            raise ExpressionError(f"'{node.id}' is a function; call it: {node.id}(...)")
        names[node.id] = None
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINOPS):
            symbol = _OPERATORS.get(type(node.op), type(node.op).__name__)
            raise ExpressionError(f"the operator '{symbol}' is not allowed")
        children = (node.left, node.right)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Invert):
            raise ExpressionError("the operator '~' is not allowed")
        children = (node.operand,)
    elif isinstance(node, ast.BoolOp):
        children = node.values
    elif isinstance(node, ast.Compare):
        children = (node.left, *node.comparators)
    elif isinstance(node, ast.IfExp):
        children = (node.test, node.body, node.orelse)
    elif isinstance(node, ast.Call):
        children = _check_call(node)
    elif isinstance(node, ast.Subscript):
        key = node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, int | str)):
            raise ExpressionError("an index must be a constant number or text, "
                                  "like x['soc'] or x[0]", hint=None)
        children = (node.value, key)
    elif isinstance(node, ast.Attribute):
        raise ExpressionError(f"attribute access ('.{node.attr}') is not allowed")
    else:
        what = _REFUSED.get(type(node), type(node).__name__)
        raise ExpressionError(f"{what} is not allowed in an expression")
    for child in children:
        _check(child, names, depth + 1)


def _check_constant(value: object) -> None:
    if value is not None and not isinstance(value, int | float | str):
        raise ExpressionError(f"the constant {value!r} is not allowed")
    if (isinstance(value, int) and not -BIG < value < BIG) \
            or (isinstance(value, float) and math.isinf(value)):
        raise ExpressionError(f"a number {BEYOND} is not allowed", hint=None)


def _check_name(name: str) -> None:
    if name.startswith("_"):
        raise ExpressionError(f"names starting with '_' are not allowed ('{name}')")


def _check_call(node: ast.Call) -> list[ast.expr]:
    func = node.func
    if not isinstance(func, ast.Name):
        raise ExpressionError("only the functions " + ", ".join(FUNCTIONS) + " can be called")
    _check_name(func.id)
    if func.id not in FUNCTIONS:
        raise ExpressionError(f"unknown function '{func.id}'", hint=suggest(
            func.id, FUNCTIONS) or "functions: " + ", ".join(FUNCTIONS))
    if node.keywords:
        raise ExpressionError(f"keyword arguments are not allowed ({func.id}(...))")
    least, most = ARITY[func.id]
    if len(node.args) < least or (most is not None and len(node.args) > most):
        takes = f"at least {least}" if most is None else f"{least} or {most}" \
            if least < most else str(least)
        plural = "" if takes.endswith("1") else "s"
        raise ExpressionError(f"{func.id} takes {takes} argument{plural}, "
                              f"got {len(node.args)}", hint=None)
    return node.args



# -- evaluation ------------------------------------------------------------------------------

_CONTAINERS = frozenset({list, dict})
_NODES = (ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
          ast.IfExp, ast.Call, ast.Subscript)


class _Interpreter(Interpreter):  # type: ignore[misc]
    """asteval's node handlers; our dispatch, bounded operators and calls.

    `run` dispatches on the node class and lets errors propagate as Python exceptions
    (asteval's error list and messages, which quote every argument, are not used); the
    nodes are those `check_expression` allows.
    """

    def __init__(self, symtable: dict[str, object]) -> None:
        super().__init__(symtable=symtable, minimal=True, use_numpy=False,
                         config={"ifexp": True})
        handlers = self.node_handlers
        self._dispatch: dict[type[ast.AST], Callable[[Any], object]] = {
            cls: handlers[cls.__name__.lower()] for cls in _NODES}

    def run(self, node: ast.AST, expr: object = None, lineno: object = None,
            with_raise: bool = True) -> object:
        return self._dispatch[node.__class__](node)

    def on_binop(self, node: ast.BinOp) -> object:
        return BINARY[node.op.__class__](self.run(node.left), self.run(node.right))

    def on_compare(self, node: ast.Compare) -> object:
        left, result = self.run(node.left), True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.run(right_node)
            if left.__class__ in _CONTAINERS or right.__class__ in _CONTAINERS:
                check_lists(op.__class__, left, right)
            result = COMPARE[op.__class__](left, right)
            if not result:
                return result
            left = right
        return result

    def on_call(self, node: ast.Call) -> object:
        name = node.func.id  # type: ignore[attr-defined]  # a Name, by check_expression
        args = [self.run(arg) for arg in node.args]
        try:
            return FUNCTIONS[name](*args)
        except EvaluationError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise EvaluationError(f"{name}: {exc}") from None

    def on_subscript(self, node: ast.Subscript) -> object:
        value = self.run(node.value)
        key = node.slice.value  # type: ignore[attr-defined]  # a Constant, as checked
        try:
            return value[key]  # type: ignore[index]
        except KeyError:
            problem = f"the mapping has no key {show(key)}"
        except IndexError:
            problem = f"the index {show(key)} is beyond the end of {kind(value)} " \
                      f"of length {len(value)}"  # type: ignore[arg-type]
        except TypeError:
            problem = f"{kind(value)} cannot be indexed with {show(key)}"
        raise EvaluationError(problem)


class Expression:
    """A checked expression, parsed once; `evaluate` runs it with values for its names."""

    __slots__ = ("_interp", "_root", "_symbols", "names", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self._root, self.names = _parse_checked(self.text)
        self._symbols: dict[str, object] = {}  # the names; calls go to FUNCTIONS directly
        self._interp = _Interpreter(self._symbols)
        self._interp.expr = self.text  # the checked tree runs as it is: parsed once, not twice
        self._check_constant_parts()

    def evaluate(self, values: Mapping[str, JsonValue]) -> JsonValue:
        """The result; a name without a value is None. Raises EvaluationError."""
        symbols = self._symbols
        for name in self.names:
            symbols[name] = values.get(name)
        result = self._run(self._root)
        if isinstance(result, int | float) and not isinstance(result, bool) \
                and not abs(result) <= MAX_MAGNITUDE:  # also refuses nan
            raise EvaluationError(f"the result is beyond ±{MAX_MAGNITUDE:g}")
        return result

    def _run(self, node: ast.AST) -> object:
        try:
            return self._interp.run(node)
        except EvaluationError:
            raise
        except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError,
                MemoryError) as exc:
            raise EvaluationError(f"{type(exc).__name__}: {exc}") from None

    def _check_constant_parts(self) -> None:
        """Compute each part without names once: refuse one that always fails."""
        parts: list[tuple[ast.expr, Callable[[object], None] | None]] = []
        if _without_names(self._root, parts) and not isinstance(self._root, ast.Constant):
            parts.append((self._root, None))
        for part, check in parts:
            try:
                value = self._run(part)
                if check is not None:
                    check(value)
            except EvaluationError as exc:
                if check is not None:
                    raise ExpressionError(str(exc), hint=None) from None
                where = "the expression" if part is self._root else \
                    f"'{shorten(ast.get_source_segment(self.text, part) or '')}'"
                raise ExpressionError(f"{where} always fails: {exc}", hint=None) from None


def _without_names(node: ast.expr, parts: list[tuple[ast.expr, Any]]) -> bool:
    """True when `node` uses no names; the largest parts without names go to `parts`."""
    if isinstance(node, ast.Name):
        return False
    if isinstance(node, ast.Call):
        children: list[ast.expr] = node.args
    elif isinstance(node, ast.Subscript):
        children = [node.value]
    else:
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr)]
    free = [_without_names(child, parts) for child in children]
    if all(free):
        return True
    parts.extend((child, None) for child, alone in zip(children, free, strict=True)
                 if alone and not isinstance(child, ast.Constant))
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[attr-defined]
        parts.extend((child, CONSTANT_ARGS[name, i]) for i, child in enumerate(children)
                     if free[i] and (name, i) in CONSTANT_ARGS)
    return False




def soc_formula(text: str, *, option: str, mark: SourceMark) -> Expression:
    """A node option that is a formula in `SOC` alone (a battery reservation, a desired
    charge current), checked: ConfigError at `mark` for anything else."""
    try:
        expression = Expression(text)
    except ExpressionError as exc:
        raise ConfigError(f"{option}: {exc}", mark=mark, hint=exc.hint) from None
    for name in expression.names:
        if name != "SOC":
            raise ConfigError(f"{option}: unknown name '{name}'", mark=mark,
                              hint=suggest(name, ["SOC"]) or "the formula's one name is "
                              "SOC, the battery's state of charge in %")
    return expression
