"""Memory and the request/response models. They validate input and are the MCP tools' schemas.

Every request model rejects unknown fields and wrong types (strictly: no "5" for 5, no 1 for true,
no 5.0 for an integer), non-finite floats, integers outside their bounds, texts with lone surrogates
or control characters, and metadata/context that is not plain JSON (see `values`: 64-bit integers,
at most 32 levels deep, at most 64 KiB). `parse()` turns any such problem into an `InvalidArgument`
whose message names each bad field in Clarity's words (`limit: must be an integer, not the string
"5"`), so a person can read it; a request that parses can be sent over the owner's socket as is.

This is the one place arguments are checked, whichever way a call comes: an MCP tool parses the
client's arguments with its `*Args` model below (`input_schema` of the same model is what
`tools/list` advertises), the service parses JSON (the CLI's, or a peer's over the owner's socket)
with the operation's `*Request` model, and a request parsed in this process is not parsed again.

Every operation answers one of the result models below (`clarity.memory.records` builds them); the
service sends them as JSON (`records.dump`), the MCP tools validate that JSON into the same models.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_serializer,
)
from pydantic_core import ErrorDetails

from clarity.errors import InvalidArgument
from clarity.values import check_json, check_text, number, quote, shown

MAX_TAGS = 32
MAX_FILTERS = 100
MAX_JSON_BYTES = 64 * 1024
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_TEXT_CHARS = 16 * 1024 * 1024  # a hard cap before any byte count; the configured limit is lower
MAX_SESSION_CHARS = 200
# the size of an answer an agent reads (see `budget`): max_chars is MIN_MAX_CHARS..MAX_MAX_CHARS
DEFAULT_MAX_CHARS = 20_000
MIN_MAX_CHARS = 1_000
MAX_MAX_CHARS = 100_000

# importance is kept to 6 decimals: the engine stores payload floats exactly only at that precision
Importance = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(lambda v: round(v, 6))]

MEMORY_TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
MemoryType = Annotated[str, StringConstraints(pattern=MEMORY_TYPE_PATTERN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64),
                AfterValidator(lambda v: check_text(v, "the tag", multiline=False))]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS),
                 AfterValidator(lambda v: check_text(v, "the text"))]
Session = Annotated[str, StringConstraints(max_length=MAX_SESSION_CHARS),
                    AfterValidator(lambda v: check_text(v, "the session", multiline=False))]


def new_id() -> str:
    """A fresh memory id; callers choose it before anything is sent, so retries are idempotent."""
    return str(uuid.uuid4())


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _check_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as e:
        what = quote(value, 60) if isinstance(value, str) else "it"
        raise ValueError(f"{what} is not a memory id (a UUID)") from e


def _check_json_size(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    if value is None:
        return None
    check_json(value, info.field_name or "the object")
    if len(orjson.dumps(value)) > MAX_JSON_BYTES:
        raise ValueError(f"must serialize to at most {MAX_JSON_BYTES} bytes of JSON")
    return value


def check_content(content: str, max_bytes: int, field: str = "content") -> None:
    """Raise InvalidArgument when `content` is blank, is not valid text (see `values.check_text`) or
    is longer than `max_bytes` UTF-8 bytes."""
    try:
        check_text(content, field)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    if not content.strip():
        raise InvalidArgument(f"{field} must not be empty")
    size = len(content.encode("utf-8"))
    if size > max_bytes:
        raise InvalidArgument(f"{field} is {size} bytes; the limit is {max_bytes} bytes")


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # how `parse` names a key this model does not take ("bogus: not an argument of store_memory")
    unknown_key: ClassVar[str] = "not an argument of this operation"


Request = _Req  # any request model: the service takes one parsed in its own process as is
Args = dict[str, Any] | _Req  # an operation's arguments: JSON (parsed where it runs) or a parsed request
RQ = TypeVar("RQ", bound=_Req)

Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json_size)]
MemoryId = Annotated[str, AfterValidator(_check_uuid)]

_D_CONTENT = "the text to remember"
_D_TYPE = "a short slug: note, decision, fact, preference, code, conversation, ..."
_D_IMPORTANCE = "0 (trivial) to 1 (critical)"
_D_TYPES = "only these memory types"
_D_TAGS_FILTER = "only memories with any of these tags"
_D_MAX_CHARS = ("fit the answer into this many characters of JSON; long contents are cut with a marker "
                "(get_memory reads on)")
MaxChars = Annotated[int, Field(ge=MIN_MAX_CHARS, le=MAX_MAX_CHARS, description=_D_MAX_CHARS)]


class MemoryFields(_Req):
    """The fields a caller may set on a memory (all optional: used by update)."""

    unknown_key: ClassVar[str] = "not a field update_memory can change"

    content: Text | None = None
    memory_type: MemoryType | None = None
    importance: Importance | None = None
    tags: Tags | None = None
    metadata: JsonObject | None = None
    context: JsonObject | None = None


class StoreArgs(_Req):
    """store_memory's arguments (the tool chooses the id and names the session: see StoreRequest)."""

    unknown_key: ClassVar[str] = "not an argument of store_memory"

    content: Text = Field(description=_D_CONTENT)
    memory_type: MemoryType = Field(default="note", description=_D_TYPE)
    importance: Importance = Field(default=0.5, description=_D_IMPORTANCE)
    tags: Tags | None = Field(default=None, description="labels to filter by")
    metadata: JsonObject | None = Field(default=None, description="any JSON object")
    context: JsonObject | None = Field(default=None, description="where it came from: file, task, ...")
    supersedes: MemoryId | None = Field(default=None, description=(
        "id of a memory this one replaces (a corrected fact): the old one is kept, marked superseded_by, "
        "and left out of searches and lists"))

    def request(self, memory_id: str, session: str) -> StoreRequest:
        """The store operation's request for these arguments, not validated again (they were when
        parsed): `memory_id` is `new_id()`, `session` a name checked once (`session_name`)."""
        return StoreRequest.model_construct(
            id=memory_id, content=self.content, memory_type=self.memory_type, importance=self.importance,
            tags=self.tags or [], metadata=self.metadata or {}, context=self.context or {}, session=session,
            supersedes=self.supersedes)


class StoreRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of the store operation"

    id: MemoryId
    content: Text
    memory_type: MemoryType = "note"
    importance: Importance = 0.5
    tags: Tags = Field(default_factory=list)
    metadata: JsonObject = Field(default_factory=dict)
    context: JsonObject = Field(default_factory=dict)
    session: Session = ""
    supersedes: MemoryId | None = None


TimeBound = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SearchMode = Literal["hybrid", "semantic", "keyword"]
Weight = Annotated[float, Field(ge=0.0, le=0.5)]


class RetrieveRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of the retrieve operation"

    query: Text = Field(min_length=1, description="what you are looking for, in your own words")
    limit: int = Field(default=5, ge=1, le=100, description="at most this many (1-100)")
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TYPES)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TAGS_FILTER)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0, description=(
        "cosine floor, -1..1 (default from the config, 0.25); keyword matches pass it in hybrid mode, it "
        "does not apply to keyword mode"))
    include_metadata: bool = Field(default=False, description="also return metadata and context")
    mode: SearchMode = Field(default="hybrid", description="hybrid (default: meaning + keywords), semantic, "
                                                           "keyword")
    since: TimeBound | None = Field(default=None, description="only memories created at or after this: ISO "
                                                              "8601 or an age like 30m, 24h, 7d, 2w")
    until: TimeBound | None = Field(default=None, description="only memories created at or before this (same "
                                                              "forms)")
    include_superseded: bool = Field(default=False, description="also return memories replaced by newer ones")
    recency_weight: Weight | None = Field(default=None, description="0-0.5: favour newer memories (default "
                                                                    "from the config: 0, off)")
    importance_weight: Weight | None = Field(default=None, description="0-0.5: favour important memories "
                                                                       "(default from the config: 0, off)")


class RetrieveArgs(RetrieveRequest):
    """retrieve_memory's arguments: the retrieve operation's, and the answer's size."""

    unknown_key: ClassVar[str] = "not an argument of retrieve_memory"

    max_chars: MaxChars = DEFAULT_MAX_CHARS


class _ListFields(_Req):
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TYPES)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TAGS_FILTER)
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT, description="page size (1-1000)")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="skip this many")
    include_content: bool = Field(default=False, description="also return content, metadata, context")


class ListRequest(_ListFields):
    unknown_key: ClassVar[str] = "not an argument of the list operation"

    include_superseded: bool = False


class ListArgs(_ListFields):
    """list_memories' arguments: the list operation's (not include_superseded), and the answer's size."""

    unknown_key: ClassVar[str] = "not an argument of list_memories"

    max_chars: MaxChars = DEFAULT_MAX_CHARS


class GetRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of the get operation"

    memory_id: MemoryId = Field(description="the memory's id")


class GetArgs(GetRequest):
    """get_memory's arguments: the get operation's, and which piece of the content to show."""

    unknown_key: ClassVar[str] = "not an argument of get_memory"

    offset: int = Field(default=0, ge=0, description="show the content from this character on")
    max_chars: MaxChars = DEFAULT_MAX_CHARS


class UpdateRequest(_Req):
    """update_memory's arguments, as they are the update operation's."""

    unknown_key: ClassVar[str] = "not an argument of update_memory"

    memory_id: MemoryId = Field(description="the memory's id")
    updates: MemoryFields = Field(description="the fields to change and their new values")


class DeleteRequest(_Req):
    """delete_memory's arguments, as they are the delete operation's."""

    unknown_key: ClassVar[str] = "not an argument of delete_memory"

    memory_ids: list[MemoryId] = Field(min_length=1, max_length=MAX_LIMIT,
                                       description="ids of the memories to delete")


class StatsRequest(_Req):
    """memory_stats takes no arguments."""

    unknown_key: ClassVar[str] = "not an argument of memory_stats"


class StatusArgs(_Req):
    """coordination_status takes no arguments."""

    unknown_key: ClassVar[str] = "not an argument of coordination_status"


class ExportRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of export"

    with_vectors: bool = False


class ImportRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of import"

    memories: list[dict[str, Any]] = Field(max_length=100_000)


class BackupRequest(_Req):
    """backup takes no arguments."""

    unknown_key: ClassVar[str] = "not an argument of backup"


def narrow(model: type[RQ], args: _Req) -> RQ:
    """The operation's request `model` from a tool's parsed `args` (`RetrieveArgs` -> `RetrieveRequest`):
    the fields they share, which were validated when `args` was parsed and have the same types and
    bounds in both, so they are not validated again; `model`'s other fields take their defaults."""
    shared = [k for k in model.model_fields if k in type(args).model_fields]
    return model.model_construct(_fields_set=args.model_fields_set & set(shared),
                                 **{k: getattr(args, k) for k in shared})


def session_name(value: str) -> str:
    """`value` if it can name a session in what it stores (one line of text, at most 200 characters),
    else InvalidArgument."""
    problem = None
    if len(value) > MAX_SESSION_CHARS:
        problem = f"must be at most {MAX_SESSION_CHARS} characters, not {len(value)}"
    else:
        try:
            check_text(value, "the session", multiline=False)
        except ValueError as e:
            problem = str(e)
    if problem is not None:
        raise InvalidArgument(f"invalid arguments: session: {problem}")
    return value


# ---- responses -------------------------------------------------------------------------------
# Output schemas stay flat: a nullable field is `"type": [T, "null"]`, not an `anyOf` (a client such as
# the Python MCP SDK validates every answer with jsonschema, where each anyOf costs a descent and an
# error object per miss; measured: a 5-memory retrieve answer 1.8 -> 1.3 ms).

OptStr = Annotated[str | None, WithJsonSchema({"type": ["string", "null"]})]
OptNum = Annotated[float | None, WithJsonSchema({"type": ["number", "null"]})]
OptObj = Annotated[dict[str, Any] | None, WithJsonSchema({"type": ["object", "null"]})]
_LEFT_OUT_WHEN_NONE = ("content", "metadata", "context", "similarity", "supersedes", "superseded_by")


class Memory(BaseModel):
    """A memory as tools return it. `content`, `metadata` and `context` are left out where the
    call did not ask for them; `similarity` is set by retrieve only; `supersedes` and `superseded_by`
    only where set (an answer never carries those keys as null)."""

    id: str
    memory_type: str
    content: OptStr = None
    importance: float
    tags: list[str] = []
    metadata: OptObj = None
    context: OptObj = None
    created_at: str
    updated_at: str
    content_hash: str
    session: str = ""
    similarity: OptNum = None
    supersedes: OptStr = None
    superseded_by: OptStr = None

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for key in _LEFT_OUT_WHEN_NONE:
            if key in out and out[key] is None:
                del out[key]
        return out


class SimilarMemory(BaseModel):
    id: str
    similarity: float


class StoreResult(BaseModel):
    """What a store answers: the id and what happened, not the memory (the caller has it; get_memory
    returns it whole)."""

    id: str = Field(description="id of the stored memory (of the existing one when duplicate)")
    stored: bool = Field(description="false when the same content and type already existed")
    duplicate_of: OptStr = Field(default=None, description="the existing memory's id when not stored")
    created_at: str = Field(description="when the memory (the existing one when duplicate) was stored")
    similar_to: list[SimilarMemory] = Field(default_factory=list, description=(
        "memories of the same type whose meaning is nearly the same (cosine >= the configured "
        "threshold, `memory.similar_threshold`); the new memory is stored all the same: update or "
        "delete one of them, or store with supersedes=<id> to replace an older one"))


class RetrieveResult(BaseModel):
    query: str
    mode: str = "hybrid"
    min_similarity: float
    count: int
    memories: list[Memory]


class ListResult(BaseModel):
    total: int = Field(description="memories matching the filters")
    offset: int
    limit: int
    memories: list[Memory]


class UpdateResult(BaseModel):
    """What an update answers (get_memory returns the updated memory)."""

    id: str
    updated_fields: list[str]
    reembedded: bool = Field(description="true when the content changed and was embedded again")
    updated_at: str


class DeleteResult(BaseModel):
    deleted: list[str]
    not_found: list[str]


class StatsResult(BaseModel):
    total: int
    by_type: dict[str, int]
    engine: str
    model: str
    dims: int
    storage_bytes: int
    unindexed: int = Field(0, description="memories written since the last vector index build (searched "
                           "exactly meanwhile; the owner rebuilds in the background past a threshold)")
    index_building: bool = Field(False, description="an index build runs in the background now")
    home: str
    served_by_pid: int


class ExportResult(BaseModel):
    """Every memory as stored (`id` then the stored payload, plus `vector` when asked for), oldest first."""

    model: str = Field(description="the embedding model the store's vectors come from")
    count: int
    memories: list[dict[str, Any]]


class ImportResult(BaseModel):
    imported: int
    skipped: int = Field(description="memories whose id was already stored (left as they were)")


class BackupResult(BaseModel):
    file: str = Field(description="the backup file written")
    count: int
    bytes: int


T = TypeVar("T", bound=BaseModel)
MAX_PROBLEMS = 8  # a message names at most this many problems, then counts the rest


def parse(model: type[T], data: Any) -> T:
    """Validate `data` as `model`, raising InvalidArgument with a readable message. An instance of
    `model` is returned as is: it was validated when it was made (a request parsed at the MCP edge
    and handed to the service in the same process is not parsed again)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidArgument("invalid arguments: " + explain(model, e)) from None


def parse_args(model: type[T], args: object) -> T:
    """One operation's arguments as `model`: a JSON object (parsed here) or a request already parsed in
    this process (see `parse`); anything else is refused with InvalidArgument."""
    if not isinstance(args, dict | _Req):
        raise InvalidArgument("arguments must be a JSON object")
    return parse(model, args)


# ---- input schemas and messages ----------------------------------------------------------------


@cache
def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` as a tool's input schema: `additionalProperties: false` (unknown keys
    are refused) and the exact types and bounds `parse` checks, with nested models written in place
    (no `$ref`: some clients do not follow them). Cached: treat it as read-only."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema.pop("description", None)  # the class docstring is for Python readers; the tool has its own

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: inline(v) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = {k: v for k, v in inline(defs[ref.rsplit("/", 1)[-1]]).items() if k != "description"}
            out = {**target, **out}
        return out

    result: dict[str, Any] = inline(schema)
    return result


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
               "object": "an object", "array": "an array", "null": "null"}
_PLURALS = {"integer": "integers", "number": "numbers", "boolean": "booleans", "string": "strings",
            "object": "objects"}
_TYPE_ERRORS = {"int_type": "integer", "float_type": "number", "bool_type": "boolean", "string_type": "string",
                "list_type": "array", "dict_type": "object", "model_type": "object",
                "model_attributes_type": "object", "none_required": "null"}
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")


def _where(loc: tuple[int | str, ...]) -> str:
    """`tags[0]`, `updates.importance`, `metadata."odd key"`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _PLAIN_KEY.match(part) else quote(part)
            out += f".{name}" if out else name
    return out or "arguments"


def _schema_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> dict[str, Any] | None:
    """The part of `model`'s input schema that describes the value at `loc`, if there is one."""
    node: Any = input_schema(model)
    for part in loc:
        branches = node.get("anyOf", [node]) if isinstance(node, dict) else []
        node = None
        for b in branches:
            if isinstance(part, int) and isinstance(b.get("items"), dict):
                node = b["items"]
            elif isinstance(part, str) and part in b.get("properties", {}):
                node = b["properties"][part]
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def expected(schema: dict[str, Any]) -> str:
    """What the schema asks for, in words: `an integer`, `an array of strings or null`."""
    if "anyOf" in schema:
        return " or ".join(expected(s) for s in schema["anyOf"])
    if "enum" in schema:
        values = [json.dumps(v) for v in schema["enum"]]
        return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"].get("type") in _PLURALS:
        return f"an array of {_PLURALS[schema['items']['type']]}"
    return _TYPE_NAMES.get(kind, "a valid value") if isinstance(kind, str) else "a valid value"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields the keys at `loc` are (`updates` of UpdateRequest: MemoryFields)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        inner = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return None
        model = inner[0]
    return model


def _unknown(model: type[BaseModel], parent: tuple[int | str, ...], keys: list[str]) -> str:
    inner = _model_at(model, parent)
    phrase = getattr(inner, "unknown_key", "not an argument")
    names = ", ".join(_where((*parent, k)) for k in keys[:MAX_PROBLEMS])
    if len(keys) > MAX_PROBLEMS:
        names += f" and {len(keys) - MAX_PROBLEMS} more"
    fields = list(inner.model_fields) if inner is not None else []
    takes = f"expected: {', '.join(fields)}" if fields else "it takes none"
    return f"{names}: {phrase} ({takes})"


def _problem(model: type[BaseModel], err: ErrorDetails) -> str:
    """One validation error in Clarity's words (without its location)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in _TYPE_ERRORS or kind == "literal_error":
        schema = _schema_at(model, err["loc"])
        want = expected(schema) if schema is not None else _TYPE_NAMES[_TYPE_ERRORS.get(kind, "string")]
        return f"must be {want}, not {shown(value)}"
    if kind == "missing":
        return "is required"
    bound = next((ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx), None)
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
                 "less_than": "less than"}[kind]
        got = number(value) if isinstance(value, int | float) else shown(value)
        return f"must be {words} {bound}, not {got}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        items = "item" if n == 1 else "items"
        return (f"must hold {'at least' if kind == 'too_short' else 'at most'} {n} {items}, "
                f"not {ctx.get('actual_length', '?')}")
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        size = len(value) if isinstance(value, str) else "?"
        return f"must be at most {ctx.get('max_length')} characters, not {size}"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == MEMORY_TYPE_PATTERN:
            return ("must be a short slug (a lowercase letter, then up to 31 lowercase letters, digits, _ or -), "
                    f"not {shown(value)}")
        return f"must match {ctx.get('pattern')}, not {shown(value)}"
    if kind == "finite_number":
        return f"must be a finite number, not {number(value) if isinstance(value, float) else shown(value)}"
    msg = str(err["msg"])
    if kind in ("value_error", "assertion_error"):  # Clarity's own validators: their message as is
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    for subject in ("Input", "String", "List", "Dictionary", "Value"):  # any other kind: pydantic's words, reworded
        msg = msg.replace(f"{subject} should", "must")
    return msg[:1].lower() + msg[1:]


def explain(model: type[BaseModel], error: ValidationError) -> str:
    """Every problem `error` found parsing `model`, as `where: what` parts in Clarity's words (keys the
    model does not take first, grouped per object), at most MAX_PROBLEMS of them."""
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    parts: list[str] = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc:
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
        else:
            parts.append(f"{_where(loc)}: {_problem(model, err)}")
    parts = [_unknown(model, parent, keys) for parent, keys in unknown.items()] + parts
    more = len(parts) - MAX_PROBLEMS
    return "; ".join(parts[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
