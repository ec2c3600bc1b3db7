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
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo

from clarity.errors import InvalidArgument
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
