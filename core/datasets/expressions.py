"""The expressions of `dataset_query`: a small, safe language compiled to SQLAlchemy, never to SQL text.

An expression is written as a Python expression (`dep_delay / 60`, `origin == 'JFK' and dep_delay > 0`,
`coalesce(fare, 0) * 1.1`, `year(dep_time)`, `'late' if dep_delay > 15 else 'on time'`) and parsed by Python's
own `ast` in eval mode; only the nodes below are accepted, every name is looked up in the dataset's schema (or given
as `col("a name with spaces")`), every constant becomes a bound parameter of the type it is compared with, and each
node is typed as it is compiled so that a mistake (`sum of text`, `date < 3`) is a 422 at submit, not a failed job.

SQL's rules, the same on both backends: a null operand gives null; `/` is true division and, like `%`, gives null
for a zero divisor; `%` takes the dividend's sign.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from core.datasets.query import NUMERIC, BadQuery, typed_value
from core.datasets.schema import ColumnSpec, ColumnType, sql_type
from core.errors import ConveyorError

MAX_LENGTH = 2000
MAX_NODES = 400
NUMERIC_RANK = {"integer": 0, "decimal": 1, "float": 2}  # integer widens to decimal, both to float
DATE_PARTS = ("year", "month", "day", "hour", "minute", "weekday")
SQLITE_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M"}
FUNCTIONS = ("coalesce", "lower", "upper", "trim", "length", "abs", "round", "date", "col", *DATE_PARTS)
HELP = (
    "Write a Python-style expression over the columns: + - * / %, == != < <= > >=, and/or/not, `is None`, `in [..]`, "
    "`a if cond else b`, and " + ", ".join(f"{f}()" for f in FUNCTIONS) + '; col("a name") for any column name.'
)


class ExpressionInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


@dataclass(frozen=True)
class Typed:
    """A compiled node: its SQL, its type (None for the null constant), its decimal scale, and, for a constant,
    the Python value (bound later as the type of what it meets)."""

    sql: Any
    type: ColumnType | None
    scale: int = 0
    constant: Any = None
    is_constant: bool = False
    source: ColumnSpec | None = None  # a bare column reference: its spec (precision, nullable) carries over

    def spec(self, name: str) -> ColumnSpec:
        """The output column this node fills."""
        if self.source is not None:
            return self.source.model_copy(update={"name": name, "column": None, "null_values": None})
        kind = self.type or "string"
        if kind == "decimal":
            return ColumnSpec(name=name, type="decimal", precision=38, scale=min(self.scale, 38))
        return ColumnSpec(name=name, type=kind)


class Compiler:
    """Compiles expressions over one table's columns for one SQL dialect."""

    def __init__(self, columns: Sequence[ColumnSpec], resolve: Callable[[ColumnSpec], Any], dialect: str) -> None:
        self.columns = {c.name: c for c in columns}
        self.resolve = resolve  # column spec → its SQLAlchemy column (of the query's table or alias)
        self.dialect = dialect

    def compile(self, text: str, *, field: str) -> Typed:
        if not isinstance(text, str) or not text.strip():
            raise self._error(field, "an expression is a non-empty string")
        if len(text) > MAX_LENGTH:
            raise self._error(field, f"at most {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            message = getattr(exc, "msg", None) or "too deeply nested"
            raise self._error(field, f"cannot parse {text!r}: {message}. {HELP}") from None
        if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
            raise self._error(field, f"at most {MAX_NODES} terms")
        try:
            return self._node(tree.body)
        except (BadQuery, ExpressionInvalid) as exc:
            raise self._error(field, f"{exc.detail}") from None
        except RecursionError:
            raise self._error(field, "too deeply nested") from None

    def condition(self, text: str, *, field: str) -> Any:
        """A filter: a boolean expression."""
        typed = self.compile(text, field=field)
        if typed.type != "boolean":
            raise self._error(field, f"a filter is a condition (true or false), not a {typed.type or 'null'} value")
        return typed.sql

    @staticmethod
    def _error(field: str, message: str) -> ExpressionInvalid:
        return ExpressionInvalid(f"{field}: {message}", errors=[{"field": field, "message": message}])

    # -- nodes -------------------------------------------------------------------------------------------------
    def _node(self, node: ast.expr) -> Typed:
        match node:
            case ast.Name(id=name):
                return self._column(name)
            case ast.Constant(value=constant):
                return self._constant(constant)
            case ast.BinOp(left=left, op=op, right=right):
                return self._arithmetic(op, self._node(left), self._node(right))
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                negated = self._node(operand)
                if negated.is_constant and type(negated.constant) in (int, float):
                    return self._constant(-negated.constant)
                self._numeric(negated, "-")
                return Typed(-negated.sql, negated.type, negated.scale)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                return Typed(sa.not_(self._boolean(self._node(operand), "not")), "boolean")
            case ast.BoolOp(op=op, values=values):
                parts = [self._boolean(self._node(v), "and/or") for v in values]
                return Typed(sa.and_(*parts) if isinstance(op, ast.And) else sa.or_(*parts), "boolean")
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                if len(ops) > 1 and any(_is_list(c) for c in comparators):
                    raise ExpressionInvalid("`in` stands alone: combine it with `and`, not in a chain.")
                terms = [self._node(left), *(self._node(c) if not _is_list(c) else c for c in comparators)]
                pairs = [self._compare(op, a, b) for op, a, b in zip(ops, terms, terms[1:], strict=False)]  # type: ignore[arg-type]
                return Typed(sa.and_(*pairs) if len(pairs) > 1 else pairs[0], "boolean")
            case ast.IfExp(test=test, body=body, orelse=orelse):
                condition = self._boolean(self._node(test), "if")
                then, otherwise = self._unify([self._node(body), self._node(orelse)], "if/else")
                return Typed(sa.case((condition, then.sql), else_=otherwise.sql), then.type or otherwise.type,
                             max(then.scale, otherwise.scale))  # fmt: skip
            case ast.Call(func=ast.Name(id=name), args=args, keywords=[]):
                return self._call(name, args)
        raise ExpressionInvalid(f"{ast.unparse(node)!r} is not allowed here. {HELP}")

    def _column(self, name: str) -> Typed:
        column = self.columns.get(name)
        if column is None:
            raise ExpressionInvalid(
                f'no column {name!r}; the columns are: {", ".join(self.columns)} (col("…") names any column).'
            )
        return Typed(self.resolve(column), column.type, column.scale or 0, source=column)

    def _call(self, name: str, args: list[ast.expr]) -> Typed:
        if name == "col":
            if len(args) != 1 or not isinstance(args[0], ast.Constant) or not isinstance(args[0].value, str):
                raise ExpressionInvalid('col() takes one column name in quotes: col("dep delay").')
            return self._column(args[0].value)
        if name not in FUNCTIONS:
            raise ExpressionInvalid(f"no function {name}(); the functions are {', '.join(FUNCTIONS)}.")
        values = [self._node(a) for a in args]
        if name == "coalesce":
            if len(values) < 2:
                raise ExpressionInvalid("coalesce() takes two values or more.")
            unified = self._unify(values, "coalesce")
            kind = next((v.type for v in unified if v.type), None)
            return Typed(sa.func.coalesce(*(v.sql for v in unified)), kind, max(v.scale for v in unified))
        if name == "round":
            return self._round(values)
        if len(values) != 1:
            raise ExpressionInvalid(f"{name}() takes one value.")
        value = values[0]
        if name in ("lower", "upper", "trim", "length"):
            self._text(value, name)
            function = {"lower": sa.func.lower, "upper": sa.func.upper, "trim": sa.func.trim,
                        "length": sa.func.length}[name]  # fmt: skip
            return Typed(function(value.sql), "integer" if name == "length" else "string")
        if name == "abs":
            self._numeric(value, "abs()")
            return Typed(sa.func.abs(value.sql), value.type, value.scale)
        if value.type not in ("date", "timestamp"):
            raise ExpressionInvalid(f"{name}() takes a date or timestamp, not {_described(value)}.")
        if name == "date":
            return Typed(self._date(value), "date")
        return Typed(self._part(value, name), "integer")

    def _round(self, values: list[Typed]) -> Typed:
        if not 1 <= len(values) <= 2:
            raise ExpressionInvalid("round() takes a number and, optionally, a whole number of decimal places.")
        value, places = values[0], values[1] if len(values) == 2 else None
        self._numeric(value, "round()")
        if places is not None and not (places.is_constant and type(places.constant) is int and
                                       0 <= places.constant <= 38):  # fmt: skip
            raise ExpressionInvalid("round()'s decimal places are a whole number from 0 to 38, written as such.")
        digits = 0 if places is None else int(places.constant)
        if value.type == "integer":
            return value
        if value.type == "decimal":
            return Typed(sa.func.round(value.sql, digits), "decimal", min(value.scale, digits))
        if self.dialect == "postgresql":  # PostgreSQL rounds to places only numerics
            return Typed(sa.cast(sa.func.round(sa.cast(value.sql, sa.Numeric), digits), _FLOAT), "float")
        return Typed(sa.func.round(value.sql, digits), "float")

    def _date(self, value: Typed) -> Any:
        if value.type == "date":
            return value.sql
        if self.dialect == "postgresql":
            return sa.cast(sa.func.timezone("UTC", value.sql), sa.Date)
        return sa.func.date(value.sql)

    def _part(self, value: Typed, part: str) -> Any:
        if self.dialect == "postgresql":
            # in UTC, as a timestamp without zone (a date, too: PostgreSQL has no hour of a date)
            moment = (
                sa.func.timezone("UTC", value.sql) if value.type == "timestamp" else sa.cast(value.sql, sa.DateTime)
            )
            return sa.cast(sa.extract("isodow" if part == "weekday" else part, moment), sa.BigInteger)
        if part == "weekday":  # ISO: Monday 1 … Sunday 7 (strftime's %w counts from Sunday 0)
            return (sa.cast(sa.func.strftime("%w", value.sql), sa.Integer) + 6) % 7 + 1
        return sa.cast(sa.func.strftime(SQLITE_PARTS[part], value.sql), sa.Integer)

    # -- operators ---------------------------------------------------------------------------------------------
    def _arithmetic(self, op: ast.operator, left: Typed, right: Typed) -> Typed:
        if isinstance(op, ast.Add) and "string" in (left.type, right.type):
            left, right = self._unify([left, right], "+")
            return Typed(left.sql.concat(right.sql), "string")
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}.get(type(op))
        if symbol is None:
            raise ExpressionInvalid(f"the operator {ast.unparse(op)!r} is not allowed. {HELP}")
        for value in (left, right):
            self._numeric(value, symbol)
        product_scale = left.scale + right.scale  # a product of decimals keeps every digit
        left, right = self._unify([left, right], symbol)
        kind, scale = left.type or right.type or "integer", max(left.scale, right.scale)
        if symbol == "/":  # true division, in floating point; a zero divisor gives null, as SQLite does
            return Typed(sa.cast(left.sql, _FLOAT) / sa.func.nullif(sa.cast(right.sql, _FLOAT), 0), "float")
        if symbol == "%":
            if kind != "integer":
                raise ExpressionInvalid("% takes whole numbers (integer columns).")
            return Typed(left.sql % sa.func.nullif(right.sql, 0), "integer")
        if symbol == "*" and kind == "decimal":
            scale = product_scale
        combined = {"+": left.sql + right.sql, "-": left.sql - right.sql, "*": left.sql * right.sql}[symbol]
        return Typed(combined, kind, scale)

    def _compare(self, op: ast.cmpop, left: Typed, right: Typed | ast.expr) -> Any:
        if isinstance(op, (ast.In, ast.NotIn)):
            assert isinstance(right, (ast.List, ast.Tuple, ast.Set))  # noqa: S101 - _is_list chose it
            items = [self._node(item) for item in right.elts]
            if not items or not all(i.is_constant for i in items):
                raise ExpressionInvalid("`in` takes a list of values: origin in ['JFK', 'LGA'].")
            values = [self._bound(left, item) for item in items]
            return left.sql.in_(values) if isinstance(op, ast.In) else left.sql.not_in(values)
        if isinstance(right, ast.expr):
            raise ExpressionInvalid("a list goes after `in`: origin in ['JFK', 'LGA'].")
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (right.is_constant and right.constant is None):
                raise ExpressionInvalid("`is` compares with None only: `fare is None`, `fare is not None`.")
            return left.sql.is_(None) if isinstance(op, ast.Is) else left.sql.is_not(None)
        symbol = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}[type(op)]
        if None in (left.type, right.type):
            raise ExpressionInvalid(f"nothing is {symbol} None in SQL; write `is None` or `is not None`.")
        left, right = self._unify([left, right], symbol)
        a, b = left.sql, right.sql
        return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[symbol]

    def _constant(self, value: Any) -> Typed:
        kinds: dict[type, ColumnType] = {bool: "boolean", int: "integer", float: "float", str: "string"}
        if value is None:
            return Typed(None, None, constant=None, is_constant=True)
        kind = kinds.get(type(value))
        if kind is None:
            raise ExpressionInvalid(f"{value!r}: constants are numbers, 'text', True, False or None.")
        if kind == "integer" and not -(2**63) <= value < 2**63:
            raise ExpressionInvalid(f"{value} is beyond a 64-bit integer.")
        if kind == "float" and not math.isfinite(value):
            raise ExpressionInvalid(f"{value!r} is not a finite number.")
        if kind == "string" and "\x00" in value:
            raise ExpressionInvalid("text constants cannot hold the NUL character.")
        scale = max(0, -int(Decimal(repr(value)).as_tuple().exponent)) if kind == "float" else 0
        typed = Typed(None, kind, min(scale, 38), value, True)
        return Typed(self._bound_value(_spec(kind, 0), typed), kind, typed.scale, value, True)

    # -- types -------------------------------------------------------------------------------------------------
    def _unify(self, values: list[Typed], where: str) -> list[Typed]:
        """The values as one type: numbers widen (integer → decimal → float); a constant takes the type of the
        values it meets (`'2026-03-01'` beside a date is a date); anything else must match."""
        typed = [v.type for v in values if not v.is_constant and v.type is not None]
        if not typed:  # constants only: as written
            typed = [v.type for v in values if v.type is not None]
        if not typed:
            return [v if v.sql is not None else Typed(sa.null(), None, is_constant=True) for v in values]
        if all(t in NUMERIC for t in typed):
            target: ColumnType = max(typed, key=NUMERIC_RANK.__getitem__)
            if target == "integer" and any(v.is_constant and v.type == "float" for v in values):
                target = "float"  # dep_delay > 1.5 compares as numbers, not as 1
        elif len(set(typed)) == 1:
            target = typed[0]
        else:
            got = ", ".join(_described(v) for v in values)
            raise ExpressionInvalid(f"{where} needs values of one type; got {got}.")
        scale = max(v.scale for v in values)
        return [self._as(v, target, scale, where) for v in values]

    def _as(self, value: Typed, target: ColumnType, scale: int, where: str) -> Typed:
        if value.is_constant:
            if value.constant is None:
                return Typed(sa.null(), target, scale, None, True)
            spec = _spec(target, scale)
            return Typed(self._bound_value(spec, value), target, scale, value.constant, True)
        if value.type == target:
            return value
        if value.type in NUMERIC and target in NUMERIC:
            cast_to = _FLOAT if target == "float" else sa.Numeric(38, scale)
            return Typed(sa.cast(value.sql, cast_to), target, scale)
        raise ExpressionInvalid(f"{where}: {_described(value)} is not a {target}.")  # pragma: no cover - _unify

    def _bound(self, column: Typed, item: Typed) -> Any:
        """A constant of an `in` list, bound as the type of what it is tested against."""
        if column.type is None or item.constant is None:
            raise ExpressionInvalid("`in` needs a column and values; test for null with `is None`.")
        kind: ColumnType = column.type
        if kind == "integer" and item.type == "float":
            raise ExpressionInvalid(f"{item.constant!r} is not a whole number (beside {_described(column)}).")
        return self._bound_value(_spec(kind, column.scale), item)

    def _bound_value(self, spec: ColumnSpec, value: Typed) -> Any:
        if spec.type in NUMERIC and value.type not in NUMERIC:
            raise ExpressionInvalid(f"{value.constant!r} is not a number.")
        if spec.type == "string" and value.type != "string":
            raise ExpressionInvalid(f"{value.constant!r} is not text; quote it: '{value.constant}'.")
        if spec.type == "boolean" and value.type != "boolean":
            raise ExpressionInvalid(f"{value.constant!r} is not True or False.")
        raw = value.constant
        exact = spec.type == "decimal" and isinstance(raw, float)  # 0.1 as written, not as a binary fraction
        bound = Decimal(repr(raw)) if exact else typed_value(spec, raw)
        literal = sa.literal(bound, type_=sql_type(spec))
        # PostgreSQL types a parameter by what it meets, and cannot when it meets only another parameter; SQLite
        # would cast date text to a number, and needs no cast.
        return sa.cast(literal, sql_type(spec)) if self.dialect == "postgresql" else literal

    def _numeric(self, value: Typed, where: str) -> None:
        if value.type is not None and value.type not in NUMERIC:
            raise ExpressionInvalid(f"{where} takes numbers, not {_described(value)}.")

    def _text(self, value: Typed, where: str) -> None:
        if value.type != "string":
            raise ExpressionInvalid(f"{where}() takes text, not {_described(value)}.")

    def _boolean(self, value: Typed, where: str) -> Any:
        if value.type != "boolean":
            raise ExpressionInvalid(f"{where} takes conditions (true or false), not {_described(value)}.")
        return value.sql if not value.is_constant else sa.true() if value.constant else sa.false()


_FLOAT = sa.Float(precision=53)


def _spec(kind: ColumnType, scale: int) -> ColumnSpec:
    if kind == "decimal":
        return ColumnSpec(name="value", type="decimal", precision=38, scale=min(scale, 38))
    return ColumnSpec(name="value", type=kind)


def _described(value: Typed) -> str:
    if value.is_constant:
        return f"the {value.type or 'null'} {value.constant!r}"
    if value.source is not None:
        return f"{value.source.name!r} ({value.type})"
    return f"a {value.type} value"


def _is_list(node: ast.expr) -> bool:
    return isinstance(node, (ast.List, ast.Tuple, ast.Set))
