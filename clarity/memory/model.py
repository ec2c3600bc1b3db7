"""The request models: each operation's arguments (`*Request`), each MCP tool's (`*Args`), the field
types they are made of, and the helpers that make or check a request's values (`new_id`, `content_hash`,
`check_content`, `narrow`, `session_name`). They validate input and are the MCP tools' input schemas.

Every request model rejects unknown fields and wrong types (strictly: no "5" for 5, no 1 for true,
no 5.0 for an integer), non-finite floats, integers outside their bounds, texts with lone surrogates
or control characters, and metadata/context that is not plain JSON (see `values`: 64-bit integers,
at most 32 levels deep, at most 64 KiB). `clarity.memory.arguments.parse()` turns any such problem into
an `InvalidArgument` whose message names each bad field in Clarity's words (`limit: must be an integer,
not the string "5"`), so a person can read it; a request that parses can be sent over the owner's socket
as is.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, model_validator

from clarity.errors import InvalidArgument
from clarity.memory.privacy import has_private, strip_private, strip_private_json, strip_private_tags
from clarity.values import check_json, check_text, quote

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
# how a memory entered this store (its provenance): an MCP tool call, the CLI, a capture hook, an import
# (of a JSON/Markdown export or a qdrant-client store), a restore, the web page
Origin = Literal["tool", "cli", "hook", "import", "restore", "ui"]
ORIGINS: tuple[str, ...] = ("tool", "cli", "hook", "import", "restore", "ui")
MAX_DETAIL_CHARS = 300
OriginDetail = Annotated[str, StringConstraints(max_length=MAX_DETAIL_CHARS),
                         AfterValidator(lambda v: check_text(v, "the origin detail", multiline=False))]



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


class _Private(_Req):
    """A request that carries a memory's fields: private text (`clarity.memory.privacy`) is removed from
    them when the request is parsed, before anything else sees the values."""

    @model_validator(mode="after")
    def _without_private(self) -> _Private:
        content = getattr(self, "content", None)
        if isinstance(content, str) and has_private(content):
            clean = strip_private(content)
            if not clean.strip():
                raise ValueError("content is empty once its <private> parts are removed: nothing to store")
            object.__setattr__(self, "content", clean)
        tags = getattr(self, "tags", None)
        if isinstance(tags, list):
            object.__setattr__(self, "tags", strip_private_tags(tags))
        for key in ("metadata", "context"):
            value = getattr(self, key, None)
            if isinstance(value, dict):
                object.__setattr__(self, key, strip_private_json(value))
        return self


Request = _Req  # any request model: the service takes one parsed in its own process as is
Args = dict[str, Any] | _Req  # an operation's arguments: JSON (parsed where it runs) or a parsed request
RQ = TypeVar("RQ", bound=_Req)

Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_json_size)]
MemoryId = Annotated[str, AfterValidator(_check_uuid)]

_D_CONTENT = "what to remember"
_D_TYPE = "note, decision, fact, preference, code, ..."
_D_IMPORTANCE = "0 (trivial) to 1 (critical)"
_D_TAGS_FILTER = "any of these tags"
# filters named for what they match (types, sessions, origins) need no description: tools/list is paid by
# every session, in its context
_D_FLAGGED = "true: only flagged memories (read like instructions), false: only others"
_D_MAX_CHARS = "answer size limit, characters of JSON"
MaxChars = Annotated[int, Field(ge=MIN_MAX_CHARS, le=MAX_MAX_CHARS, description=_D_MAX_CHARS)]


class MemoryFields(_Private):
    """The fields a caller may set on a memory (all optional: used by update)."""

    unknown_key: ClassVar[str] = "not a field update_memory can change"

    content: Text | None = None
    memory_type: MemoryType | None = None
    importance: Importance | None = None
    tags: Tags | None = None
    metadata: JsonObject | None = None
    context: JsonObject | None = None


class StoreArgs(_Private):
    """store_memory's arguments (the tool chooses the id and names the session: see StoreRequest)."""

    unknown_key: ClassVar[str] = "not an argument of store_memory"

    content: Text = Field(description=_D_CONTENT)
    memory_type: MemoryType = Field(default="note", description=_D_TYPE)
    importance: Importance = Field(default=0.5, description=_D_IMPORTANCE)
    tags: Tags | None = Field(default=None, description="labels to filter by")
    metadata: JsonObject | None = None
    context: JsonObject | None = Field(default=None, description="where it came from: file, task, ...")
    supersedes: MemoryId | None = Field(default=None, description=(
        "id of a memory this one corrects (kept, marked superseded_by, hidden from searches)"))

    def request(self, memory_id: str, session: str) -> StoreRequest:
        """The store operation's request for these arguments, not validated again (they were when
        parsed): `memory_id` is `new_id()`, `session` a name checked once (`session_name`)."""
        return StoreRequest.model_construct(
            id=memory_id, content=self.content, memory_type=self.memory_type, importance=self.importance,
            tags=self.tags or [], metadata=self.metadata or {}, context=self.context or {}, session=session,
            supersedes=self.supersedes, origin="tool", origin_detail="")


class StoreRequest(_Private):
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
    origin: Origin = "tool"
    origin_detail: OriginDetail = ""


TimeBound = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SearchMode = Literal["hybrid", "semantic", "keyword"]
Weight = Annotated[float, Field(ge=0.0, le=0.5)]


class RetrieveRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of the retrieve operation"

    query: Text = Field(min_length=1, description="in your own words")
    limit: int = Field(default=5, ge=1, le=100)
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TAGS_FILTER)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0, description=(
        "cosine floor (default 0.25); keyword matches pass it"))
    include_metadata: bool = Field(default=False, description="with metadata and context")
    mode: SearchMode = Field(default="hybrid", description="hybrid: meaning + keywords")
    since: TimeBound | None = Field(default=None, description="ISO 8601 or an age: 30m, 24h, 7d, 2w")
    until: TimeBound | None = Field(default=None, description="same forms as since")
    include_superseded: bool = Field(default=False, description="with memories replaced by newer ones")
    sessions: list[Session] | None = Field(default=None, max_length=MAX_FILTERS)
    origins: list[Origin] | None = Field(default=None, max_length=MAX_FILTERS)
    flagged: bool | None = Field(default=None, description=_D_FLAGGED)
    recency_weight: Weight | None = Field(default=None, description="favour newer memories")
    importance_weight: Weight | None = Field(default=None, description="favour important memories")


class RetrieveArgs(RetrieveRequest):
    """retrieve_memory's arguments: the retrieve operation's, and the answer's size."""

    unknown_key: ClassVar[str] = "not an argument of retrieve_memory"

    max_chars: MaxChars = DEFAULT_MAX_CHARS


class _ListFields(_Req):
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS, description=_D_TAGS_FILTER)
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    include_content: bool = Field(default=False, description="with content, metadata, context")
    sessions: list[Session] | None = Field(default=None, max_length=MAX_FILTERS)
    origins: list[Origin] | None = Field(default=None, max_length=MAX_FILTERS)
    flagged: bool | None = Field(default=None, description=_D_FLAGGED)


class ListRequest(_ListFields):
    unknown_key: ClassVar[str] = "not an argument of the list operation"

    include_superseded: bool = False


class ListArgs(_ListFields):
    """list_memories' arguments: the list operation's (not include_superseded), and the answer's size."""

    unknown_key: ClassVar[str] = "not an argument of list_memories"

    max_chars: MaxChars = DEFAULT_MAX_CHARS


class ReviewRequest(_Req):
    """A person's review of a flagged memory (`clarity review`, the web page; no MCP tool offers it)."""

    unknown_key: ClassVar[str] = "not an argument of the review operation"

    memory_id: MemoryId


class GetRequest(_Req):
    unknown_key: ClassVar[str] = "not an argument of the get operation"

    memory_id: MemoryId


class GetArgs(GetRequest):
    """get_memory's arguments: the get operation's, and which piece of the content to show."""

    unknown_key: ClassVar[str] = "not an argument of get_memory"

    offset: int = Field(default=0, ge=0, description="content from this character on")
    max_chars: MaxChars = DEFAULT_MAX_CHARS


class UpdateRequest(_Req):
    """update_memory's arguments, as they are the update operation's."""

    unknown_key: ClassVar[str] = "not an argument of update_memory"

    memory_id: MemoryId
    updates: MemoryFields = Field(description="new values of the fields to change")


class DeleteRequest(_Req):
    """delete_memory's arguments, as they are the delete operation's."""

    unknown_key: ClassVar[str] = "not an argument of delete_memory"

    memory_ids: list[MemoryId] = Field(min_length=1, max_length=MAX_LIMIT)


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
    source: OriginDetail = ""  # where they come from (a file's name): the imported memories' origin_detail


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


def detail_line(text: str) -> str:
    """`text` as an origin detail: one line (every run of white space made one space), printable
    characters only, at most `MAX_DETAIL_CHARS` (what `OriginDetail` takes, whatever a file name holds)."""
    return "".join(c for c in " ".join(text.split()) if c.isprintable())[:MAX_DETAIL_CHARS]


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
