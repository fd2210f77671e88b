"""The restricted expression language of `formula` (not a node type).

An expression is one Python expression made of: numbers, texts, True, False, None,
names, `+ - * / // % **`, comparisons, `and or not`, `a if cond else b`,
`x['key']` and `x[0]` with a constant index, and calls of the functions in
`FUNCTIONS`. `check_expression` refuses everything else before anything runs
(attributes, hence `__class__` tricks; lambdas; comprehensions; literals of lists,
dicts, sets and tuples; f-strings; `:=`; names starting with `_`). What is left is
evaluated by asteval, parsed once; integer powers are bounded before they are
computed and results beyond `MAX_MAGNITUDE` are errors, so evaluation stays short.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Collection, Iterable, Mapping

from asteval import Interpreter
from asteval.astutils import MAX_EXPONENT, safe_pow

from flowengine.model import JsonValue

__all__ = ["FUNCTIONS", "EvaluationError", "Expression", "ExpressionError", "suggest"]


def clamp(x: float, lo: float, hi: float) -> float:
    """x limited to the range lo..hi."""
    return lo if x < lo else hi if x > hi else x


FUNCTIONS = {"min": min, "max": max, "abs": abs, "round": round, "clamp": clamp,
             "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt}
MAX_MAGNITUDE = 1e15
MAX_POW_BITS = 4096  # an integer power larger than this is refused before it is computed
MAX_DEPTH = 100
MAX_LENGTH = 2000

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


class EvaluationError(ArithmeticError):
    """Evaluating failed (division by zero, a result too large, a wrong type...)."""


def suggest(name: str, choices: Collection[str]) -> str | None:
    """'did you mean 'x'?', ignoring case (so 'SOCC' finds 'soc')."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'?" if close else None


def check_expression(text: str) -> tuple[str, ...]:
    """The names `text` uses, in order of first use; ExpressionError if not allowed."""
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
    return tuple(names)


def _check(node: ast.AST, names: dict[str, None], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} levels deep")
    children: Iterable[ast.AST] = ()
    if isinstance(node, ast.Constant):
        if node.value is not None and not isinstance(node.value, int | float | str):
            raise ExpressionError(f"the constant {node.value!r} is not allowed")
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
        children = (node.value,)
    elif isinstance(node, ast.Attribute):
        raise ExpressionError(f"attribute access ('.{node.attr}') is not allowed")
    else:
        what = _REFUSED.get(type(node), type(node).__name__)
        raise ExpressionError(f"{what} is not allowed in an expression")
    for child in children:
        _check(child, names, depth + 1)


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
    return node.args


class _Interpreter(Interpreter):  # type: ignore[misc]
    """asteval, with integer powers bounded in size before they are computed."""

    def on_binop(self, node: ast.BinOp) -> object:
        if not isinstance(node.op, ast.Pow):
            return super().on_binop(node)
        base, exp = self.run(node.left), self.run(node.right)
        if isinstance(base, int) and isinstance(exp, int) and 0 < exp <= MAX_EXPONENT \
                and abs(base).bit_length() * exp > MAX_POW_BITS:
            raise OverflowError("the power is too large")
        return safe_pow(base, exp)


class Expression:
    """A checked expression, parsed once; `evaluate` runs it with values for its names."""

    __slots__ = ("_interp", "_symbols", "_tree", "names", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.names = check_expression(self.text)
        self._symbols: dict[str, object] = dict(FUNCTIONS)
        self._interp = _Interpreter(symtable=self._symbols, minimal=True, use_numpy=False,
                                    config={"ifexp": True})
        self._tree = self._interp.parse(self.text)

    def evaluate(self, values: Mapping[str, JsonValue]) -> JsonValue:
        """The result; a name without a value is None. Raises EvaluationError."""
        symbols = self._symbols
        for name in self.names:
            symbols[name] = values.get(name)
        interp = self._interp
        interp.error = []
        interp.error_msg = None
        result = interp.run(self._tree, with_raise=False)
        if interp.error:
            raise EvaluationError(interp.error[-1].get_error()[1].splitlines()[-1])
        if isinstance(result, int | float) and not isinstance(result, bool) \
                and not abs(result) <= MAX_MAGNITUDE:  # also refuses nan
            raise EvaluationError(f"the result is beyond ±{MAX_MAGNITUDE:g}")
        return result
