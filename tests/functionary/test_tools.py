"""functionary.tools: tool definitions from callables, docstrings, argument conversion."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import functools
import typing
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict, Union

import jsonschema
import pytest

from functionary.errors import FunctionaryError
from functionary.tools import Tool, ToolSchemaError, coerce_arguments, function_to_tool, parse_docstring


def params(fn, **kw) -> dict:
    tool = function_to_tool(fn, **kw)
    assert tool["type"] == "function"
    schema = tool["function"]["parameters"]
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def prop(annotation, **kw) -> dict:
    """Schema of a single required parameter ``x: annotation``."""

    def f(x):  # annotation patched in below
        pass

    f.__annotations__ = {"x": annotation}
    return params(f)["properties"]["x"]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    """A 2-D point.

    Attributes
    ----------
    x : float
        Horizontal position.
    y : float
        Vertical position.
    """

    x: float
    y: float = 0.0


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


class Movie(TypedDict):
    """A movie.

    Args:
        title: The title.
    """

    title: str
    year: int


class PartialMovie(TypedDict, total=False):
    title: str


# --------------------------------------------------------------------------- annotation matrix


@pytest.mark.parametrize(
    "annotation, expected",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (typing.List[str], {"type": "array", "items": {"type": "string"}}),
        (list, {"type": "array"}),
        (collections.abc.Sequence[float], {"type": "array", "items": {"type": "number"}}),
        (set[str], {"type": "array", "items": {"type": "string"}}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False,
             "minItems": 2, "maxItems": 2},
        ),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (typing.Dict[str, Any], {"type": "object"}),
        (dict, {"type": "object"}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, 2.5], {"type": "number", "enum": [1, 2.5]}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (Color, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (list[int | str], {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}),
        (Annotated[int, "how many"], {"type": "integer", "description": "how many"}),
        (datetime.datetime, {"type": "string", "format": "date-time"}),
        (datetime.date, {"type": "string", "format": "date"}),
        (uuid.UUID, {"type": "string", "format": "uuid"}),
        (Path, {"type": "string"}),
        (dict[Literal["a", "b"], int],
         {"type": "object", "additionalProperties": {"type": "integer"}, "propertyNames": {"enum": ["a", "b"]}}),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_annotation_matrix(annotation, expected):
    assert prop(annotation) == expected


def test_dataclass_typeddict_and_recursion():
    assert prop(Point) == {
        "type": "object",
        "properties": {
            "x": {"type": "number", "description": "Horizontal position."},
            "y": {"type": "number", "default": 0.0, "description": "Vertical position."},
        },
        "required": ["x"],
        "additionalProperties": False,
        "description": "A 2-D point.",
    }
    assert prop(Movie) == {
        "type": "object",
        "properties": {"title": {"type": "string", "description": "The title."}, "year": {"type": "integer"}},
        "required": ["title", "year"],
        "additionalProperties": False,
        "description": "A movie.",
    }
    assert "required" not in prop(PartialMovie)

    def plant(tree: Tree) -> None:
        pass

    schema = params(plant)
    assert schema["properties"]["tree"] == {"$ref": "#/$defs/Tree"}
    tree_def = schema["$defs"]["Tree"]
    assert tree_def["properties"]["children"] == {"type": "array", "items": {"$ref": "#/$defs/Tree"}}
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"tree": {"value": 1, "children": [{"value": 2, "children": []}]}})
    assert not validator.is_valid({"tree": {"value": 1, "children": [{"value": "x"}]}})


def test_pydantic_model_defs_are_hoisted():
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):
        street: str
        city: str = "Paris"

    class Person(pydantic.BaseModel):
        name: str = pydantic.Field(description="Full name")
        home: Address
        past: list[Address] = []

    # The annotations are strings (``from __future__ import annotations``) naming local
    # classes: they resolve through the closure.
    def register(person: Person, note: str | None = None) -> str:
        assert isinstance(person, Person)
        return person.name

    schema = params(register)
    assert set(schema["$defs"]) == {"Address"}
    person = schema["properties"]["person"]
    assert person["properties"]["home"] == {"$ref": "#/$defs/Address"}
    assert person["properties"]["name"]["description"] == "Full name"
    assert person["required"] == ["name", "home"]
    validator = jsonschema.Draft202012Validator(schema)
    good = {"person": {"name": "Ada", "home": {"street": "x"}, "past": [{"street": "y", "city": "z"}]}}
    assert validator.is_valid(good)
    assert not validator.is_valid({"person": {"name": "Ada", "home": {"city": "z"}}})
    bound = coerce_arguments(register, good)
    assert isinstance(bound.arguments["person"], Person)
    assert bound.arguments["person"].past[0].city == "z"


def test_defaults_required_and_enum_default():
    def f(a: int, b: str = "x", c: Color = Color.GREEN, d: list[int] | None = None, e: object = object()):
        pass

    schema = params(f)
    assert schema["required"] == ["a"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["b"]["default"] == "x"
    assert schema["properties"]["c"] == {"type": "string", "enum": ["red", "green"], "default": "green"}
    assert schema["properties"]["d"]["default"] is None
    assert "default" not in schema["properties"]["e"]  # not JSON: left out, still optional


def test_no_annotation_is_any_and_methods_skip_self():
    class Calculator:
        def add(self, a: int, b):
            """Add.

            :param a: first
            :param b: second
            """
            return a + b

    tool = function_to_tool(Calculator().add)
    assert tool["function"]["name"] == "add"
    assert tool["function"]["parameters"]["properties"] == {
        "a": {"type": "integer", "description": "first"},
        "b": {"description": "second"},
    }


def test_partial_and_async_and_callable_object():
    def power(base: float, exp: int = 2) -> float:
        return base**exp

    tool = function_to_tool(functools.partial(power, exp=3), name="cube")
    assert tool["function"]["name"] == "cube"
    assert tool["function"]["parameters"]["properties"]["exp"]["default"] == 3

    async def fetch(url: str) -> str:
        """Fetch a URL."""
        return url

    assert Tool.from_function(fetch).is_async
    assert function_to_tool(fetch)["function"]["description"] == "Fetch a URL."

    class Adder:
        def __call__(self, a: int, b: int) -> int:
            return a + b

    with pytest.raises(ToolSchemaError, match="name"):
        function_to_tool(Adder())
    assert function_to_tool(Adder(), name="adder")["function"]["parameters"]["required"] == ["a", "b"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "annotation, needle",
    [
        (bytes, "bytes"),
        (dict[int, str], "dict keys must be str"),
        (Literal[b"x"], "not a JSON scalar"),
        (complex, "unsupported annotation complex"),
        (list[complex], "unsupported annotation complex"),
    ],
)
def test_unsupported_annotations_name_the_parameter(annotation, needle):
    def fn(ok: int, bad):
        pass

    fn.__annotations__ = {"ok": int, "bad": annotation}
    with pytest.raises(ToolSchemaError, match=needle) as info:
        function_to_tool(fn)
    assert info.value.parameter.startswith("bad")
    assert "'bad" in str(info.value)
    assert isinstance(info.value, FunctionaryError)


def test_nested_unsupported_field_path_and_star_args():
    @dataclasses.dataclass
    class Holder:
        blob: bytes

    def store(item: Holder):
        return Holder  # a closure variable, so the string annotation resolves

    with pytest.raises(ToolSchemaError) as info:
        function_to_tool(store)
    assert info.value.parameter == "item.blob"

    def variadic(a: int, *rest: int):
        pass

    with pytest.raises(ToolSchemaError, match=r"\*rest"):
        function_to_tool(variadic)

    def kw(**options: str):
        pass

    with pytest.raises(ToolSchemaError, match=r"\*\*options"):
        function_to_tool(kw)

    with pytest.raises(ToolSchemaError, match="name"):
        function_to_tool(lambda x: x)

    class Weird(enum.Enum):
        A = (1, 2)

    def pick(w: Weird):
        return Weird

    with pytest.raises(ToolSchemaError, match="non-JSON value"):
        function_to_tool(pick)


def test_unresolvable_forward_reference():
    def fn(x: "NotDefinedAnywhere"):  # noqa: F821
        pass

    with pytest.raises(ToolSchemaError, match="NotDefinedAnywhere") as info:
        function_to_tool(fn)
    assert info.value.parameter == "x"


# --------------------------------------------------------------------------- docstrings

GOOGLE = '''Book a flight.

    Finds the cheapest option.

    Args:
        origin (str): IATA code of the
            departure airport.
        destination: IATA code of the arrival airport.
        passengers (int, optional): How many.

    Returns:
        str: A booking id.

    Raises:
        ValueError: never.
    '''

NUMPY = '''Book a flight.

    Finds the cheapest option.

    Parameters
    ----------
    origin : str
        IATA code of the
        departure airport.
    destination
        IATA code of the arrival airport.
    passengers : int, optional
        How many.

    Returns
    -------
    str
        A booking id.
    '''

SPHINX = '''Book a flight.

    Finds the cheapest option.

    :param str origin: IATA code of the
        departure airport.
    :param destination: IATA code of the arrival airport.
    :type destination: str
    :param passengers: How many.
    :returns: A booking id.
    :rtype: str
    '''


@pytest.mark.parametrize("doc", [GOOGLE, NUMPY, SPHINX], ids=["google", "numpy", "sphinx"])
def test_docstring_styles(doc):
    def book(origin: str, destination: str, passengers: int = 1) -> str:
        return "id"

    book.__doc__ = doc
    tool = function_to_tool(book)["function"]
    assert tool["description"] == "Book a flight.\n\nFinds the cheapest option."
    props = tool["parameters"]["properties"]
    assert props["origin"]["description"] == "IATA code of the departure airport."
    assert props["destination"]["description"] == "IATA code of the arrival airport."
    assert props["passengers"]["description"] == "How many."
    assert "returns" not in tool["description"].lower()


def test_parse_docstring_edge_cases():
    assert parse_docstring(None).params == {}
    assert parse_docstring("Just a summary.").description == "Just a summary."
    doc = parse_docstring("Summary.\n\nNote:\n    something\n\nArgs:\n    *args: extra\n    x: the x\n")
    assert doc.description == "Summary."
    assert doc.params == {"args": "extra", "x": "the x"}
    numpy_multi = parse_docstring("S.\n\nParameters\n----------\nx, y : int\n    Coordinates.\n")
    assert numpy_multi.params == {"x": "Coordinates.", "y": "Coordinates."}
    assert function_to_tool(lambda: 0, name="f", description="given")["function"]["description"] == "given"


# --------------------------------------------------------------------------- coercion


def test_coerce_arguments_builds_python_values():
    def f(
        color: Color,
        level: Level,
        point: Point,
        tree: Tree,
        when: datetime.datetime,
        pair: tuple[int, str],
        tags: set[str],
        opt: Optional[Point] = None,
        ratio: float = 1.0,
        movie: Movie | None = None,
    ):
        pass

    bound = coerce_arguments(
        f,
        {
            "color": "green", "level": 2, "point": {"x": 1}, "tree": {"value": 1, "children": [{"value": 2}]},
            "when": "2024-05-01T10:00:00Z", "pair": [1, "a"], "tags": ["a", "b", "a"], "opt": None, "ratio": 3,
            "movie": {"title": "T", "year": 1999},
        },
    )
    args = bound.arguments
    assert args["color"] is Color.GREEN and args["level"] is Level.HIGH
    assert args["point"] == Point(1.0, 0.0) and isinstance(args["point"].x, float)
    assert args["tree"] == Tree(1, [Tree(2, [])])
    assert args["when"] == datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.timezone.utc)
    assert args["pair"] == (1, "a") and args["tags"] == {"a", "b"}
    assert args["opt"] is None and isinstance(args["ratio"], float)
    assert args["movie"] == {"title": "T", "year": 1999}


def test_coerce_positional_only_and_errors():
    def f(a: int, /, b: Color):
        return a, b

    bound = coerce_arguments(f, {"a": 1, "b": "red"})
    assert f(*bound.args, **bound.kwargs) == (1, Color.RED)
    with pytest.raises(TypeError, match="unexpected"):
        coerce_arguments(f, {"a": 1, "b": "red", "c": 2})
    with pytest.raises(ValueError):
        coerce_arguments(f, {"a": 1, "b": "purple"})


def test_schema_accepts_what_coercion_handles():
    """Round trip: values valid for the schema are converted, called, and the call works."""

    def plan(points: list[Point], mode: Literal["fast", "slow"] = "fast", color: Color | None = None) -> int:
        assert all(isinstance(p, Point) for p in points)
        assert color is None or isinstance(color, Color)
        return len(points)

    tool = Tool.from_function(plan)
    payload = {"points": [{"x": 1, "y": 2}, {"x": 0.5}], "color": "red"}
    jsonschema.validate(payload, tool.parameters)
    bound = tool.bind(payload)
    assert tool.fn(*bound.args, **bound.kwargs) == 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"points": [{"y": 1}]}, tool.parameters)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"points": [], "extra": 1}, tool.parameters)
