"""Memory and the request/response models. They validate input and are the MCP tools' schemas.

Every request model rejects unknown fields and wrong types (strictly: no "5" for 5, no 1 for true),
non-finite floats, integers outside their bounds, texts with lone surrogates or control characters,
and metadata/context that is not plain JSON (see `values`: 64-bit integers, at most 32 levels deep,
at most 64 KiB). `parse()` turns any such problem into an `InvalidArgument` whose message names each
bad field, so a person can read it; a request that parses can be sent over the owner's socket as is.

Every operation answers one of the result models below (`clarity.memory.records` builds them); the
service sends them as JSON (`records.dump`), the MCP tools validate that JSON into the same models.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal, TypeVar

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
    field_validator,
    model_serializer,
)

from clarity.errors import InvalidArgument
from clarity.memory.values import check_json, check_text

MAX_TAGS = 32
MAX_FILTERS = 100
MAX_JSON_BYTES = 64 * 1024
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_TEXT_CHARS = 16 * 1024 * 1024  # a hard cap before any byte count; the configured limit is lower
MAX_SESSION_CHARS = 200

# importance is kept to 6 decimals: the engine stores payload floats exactly only at that precision
Importance = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(lambda v: round(v, 6))]

MemoryType = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$"),
]
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
        shown = repr(value[:60]) + ("..." if len(value) > 60 else "") if isinstance(value, str) else "it"
        raise ValueError(f"{shown} is not a memory id (a UUID)") from e


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


Request = _Req  # any request model: the service takes one parsed in its own process as is
Args = dict[str, Any] | _Req  # an operation's arguments: JSON (parsed where it runs) or a parsed request


class MemoryFields(_Req):
    """The fields a caller may set on a memory (all optional: used by update)."""

    content: Text | None = None
    memory_type: MemoryType | None = None
    importance: Importance | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    metadata: dict[str, Any] | None = None
    context: dict[str, Any] | None = None

    _json_size = field_validator("metadata", "context")(_check_json_size)


class StoreRequest(_Req):
    id: str
    content: Text
    memory_type: MemoryType = "note"
    importance: Importance = 0.5
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    session: Session = ""
    supersedes: str | None = None

    _id = field_validator("id")(_check_uuid)
    _json_size = field_validator("metadata", "context")(_check_json_size)

    @field_validator("supersedes")
    @classmethod
    def _sup(cls, v: str | None) -> str | None:
        return None if v is None else _check_uuid(v)


TimeBound = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SearchMode = Literal["hybrid", "semantic", "keyword"]


class RetrieveRequest(_Req):
    query: Text = Field(min_length=1)
    limit: int = Field(default=5, ge=1, le=100)
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)
    include_metadata: bool = False
    mode: SearchMode = "hybrid"
    since: TimeBound | None = None
    until: TimeBound | None = None
    include_superseded: bool = False
    recency_weight: float | None = Field(default=None, ge=0.0, le=0.5)
    importance_weight: float | None = Field(default=None, ge=0.0, le=0.5)


class ListRequest(_Req):
    types: list[MemoryType] | None = Field(default=None, max_length=MAX_FILTERS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_FILTERS)
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    include_content: bool = False
    include_superseded: bool = False


class GetRequest(_Req):
    memory_id: str
    _id = field_validator("memory_id")(_check_uuid)


class UpdateRequest(_Req):
    memory_id: str
    updates: MemoryFields
    _id = field_validator("memory_id")(_check_uuid)


class DeleteRequest(_Req):
    memory_ids: list[str] = Field(min_length=1, max_length=MAX_LIMIT)

    @field_validator("memory_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        return [_check_uuid(x) for x in v]


class StatsRequest(_Req):
    """memory_stats takes no arguments."""


class ExportRequest(_Req):
    with_vectors: bool = False


class ImportRequest(_Req):
    memories: list[dict[str, Any]] = Field(max_length=100_000)


class BackupRequest(_Req):
    """backup takes no arguments."""


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


def parse(model: type[T], data: Any) -> T:
    """Validate `data` as `model`, raising InvalidArgument with a readable message. An instance of
    `model` is returned as is: it was validated when it was made (a request parsed at the MCP edge
    and handed to the service in the same process is not parsed again)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "arguments"
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}")
        raise InvalidArgument("invalid arguments: " + "; ".join(parts)) from None


def parse_args(model: type[T], args: object) -> T:
    """One operation's arguments as `model`: a JSON object (parsed here) or a request already parsed in
    this process (see `parse`); anything else is refused with InvalidArgument."""
    if not isinstance(args, dict | _Req):
        raise InvalidArgument("arguments must be a JSON object")
    return parse(model, args)
