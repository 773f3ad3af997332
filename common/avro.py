"""The one Avro codec of the platform: every Kafka message value is encoded and decoded here.

The schemas live in ``schemas/<Record>.avsc`` (namespace ``vidplat.events``), one file per event. The same
codec serves confluent-kafka producers/consumers (``AvroCodec.encode`` / ``AvroCodec.decode``) and the Faust
app (``FaustAvroCodec``, or ``register_faust_codec`` for a named ``value_serializer``).

Every message is self-describing, so a schema can evolve while old messages sit in Kafka:

* by default, Avro single-object encoding: ``C3 01`` + the writer schema's 8-byte CRC-64-AVRO fingerprint
  (little-endian, as the Java implementation writes it) + the Avro binary body. The decoder finds the writer
  schema by fingerprint among the current schemas and the old versions kept in
  ``schemas/history/<Record>.v<N>.avsc``, then resolves it to the reader schema (defaults fill new fields,
  removed fields are dropped).
* when ``SCHEMA_REGISTRY_URL`` is set, the Confluent wire format: ``00`` + 4-byte big-endian schema id +
  body, with ids from the registry under the TopicNameStrategy subject ``<topic>-value``. The decoder reads
  both framings whatever the setting, so a switch-over needs no flag day.

Changing a schema: first ``python -m common.avro snapshot <Record>`` (copies the current version into
``schemas/history``), then edit ``schemas/<Record>.avsc``; give every new field a default. The unit tests
check that each history version and the current one read each other (full transitive compatibility) and pin
the current fingerprints, so forgetting the snapshot fails the tests instead of stranding old messages.
``python -m common.avro list`` prints every known schema version with its fingerprint.

Errors: ``SchemaValidationError`` (a ValueError) when a value does not fit its schema, naming the record and
field; ``UndecodableMessage`` (a ValueError) when bytes cannot be decoded — a poison message for the DLQ;
``SchemaRegistryError`` when the registry cannot be reached or refuses a schema — an infrastructure failure
to retry, never a reason to dead-letter a message.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import re
import reprlib
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import faust
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate
from fastavro.write import LOGICAL_WRITERS
from faust.serializers import codecs as faust_codecs
from faust.types import ModelT
from faust.types.codecs import CodecT

from common.settings import REPO_ROOT, KafkaSettings, load_settings

SCHEMA_DIR = REPO_ROOT / "schemas"
NAMESPACE = "vidplat.events"
SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

# A parsed fastavro schema of one record.
Schema = dict[str, Any]

# "VideoUploaded" (current) or "VideoUploaded.v1" (history); also keeps paths out of names.
_NAME_RE = re.compile(r"(?P<name>[A-Z][A-Za-z0-9_]*)(?:\.v(?P<version>[1-9][0-9]*))?")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Faust models add this key to their dict form; it is metadata, not a field.
_FAUST_METADATA_KEY = "__faust"
_short_repr = reprlib.Repr()
_short_repr.maxstring = 60
_short_repr.maxother = 60


class SchemaValidationError(ValueError):
    """A value does not fit its schema; ``record`` and ``field`` say where."""

    def __init__(self, record: str, field: str, problem: str) -> None:
        super().__init__(f"invalid {record}: field {field!r} {problem}" if field else f"invalid {record}: {problem}")
        self.record = record
        self.field = field


class UndecodableMessage(ValueError):
    """Bytes that are not a decodable message of a known schema: dead-letter them."""


class SchemaRegistryError(RuntimeError):
    """The schema registry failed or refused a request (``status`` is the HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- schemas ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema, as loaded from schemas/ or schemas/history/."""

    name: str  # record name without namespace, e.g. "VideoStatusChanged"
    label: str  # "VideoStatusChanged" for the current version, "VideoStatusChanged.v1" for history
    parsed: Schema
    text: str  # self-contained JSON (docs and defaults kept): what a registry gets
    fingerprint: bytes  # CRC-64-AVRO of the parsing canonical form, little-endian


def _split_label(label: str) -> tuple[str, int | None]:
    match = _NAME_RE.fullmatch(label)
    if match is None:
        raise ValueError(f"bad schema name {label!r}: expected a record name like 'VideoUploaded' or 'X.v1'")
    version = match.group("version")
    return match.group("name"), int(version) if version else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _inline_references(node: Any, schema_dir: Path, defined: set[str]) -> Any:
    """Replace references to other schemas/ files by their definitions (first use only, as Avro wants).

    A file may name another file's record (PlaybackEventBatch → PlaybackEvent) so each definition exists
    once; the fingerprint and the registry need the self-contained form.
    """
    if isinstance(node, str):
        full = node if "." in node else f"{NAMESPACE}.{node}"
        if node in _PRIMITIVES or full in defined or not full.startswith(f"{NAMESPACE}."):
            return node
        path = schema_dir / f"{full.removeprefix(NAMESPACE + '.')}.avsc"
        if not path.is_file():
            return node  # parse_schema reports the unknown type
        return _inline_references(_read_json(path), schema_dir, defined)
    if isinstance(node, list):
        return [_inline_references(branch, schema_dir, defined) for branch in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    out = dict(node)
    if kind in ("record", "error", "enum", "fixed"):
        name = str(node["name"])
        defined.add(name if "." in name else f"{node.get('namespace', NAMESPACE)}.{name}")
    if kind in ("record", "error"):
        out["fields"] = [
            {**field, "type": _inline_references(field["type"], schema_dir, defined)} for field in node["fields"]
        ]
    elif kind == "array":
        out["items"] = _inline_references(node["items"], schema_dir, defined)
    elif kind == "map":
        out["values"] = _inline_references(node["values"], schema_dir, defined)
    elif isinstance(kind, dict | list):
        out["type"] = _inline_references(kind, schema_dir, defined)
    return out


@functools.cache
def schema_version(label: str, schema_dir: Path = SCHEMA_DIR) -> SchemaVersion:
    """Load ``schemas/<Name>.avsc`` (label "Name") or ``schemas/history/<Name>.v<N>.avsc`` ("Name.vN")."""
    name, version = _split_label(label)
    if version is None:
        path = schema_dir / f"{name}.avsc"
    else:
        path = schema_dir / "history" / f"{name}.v{version}.avsc"
    if not path.is_file():
        known = ", ".join(record_names(schema_dir))
        raise ValueError(f"no schema {label!r} (looked for {path}); current records: {known}")
    raw = _read_json(path)
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ValueError(f"{path} must hold one Avro record schema")
    if raw.get("name") != name or raw.get("namespace") != NAMESPACE:
        # The file name is how records are found, so it must match the record it holds.
        raise ValueError(f"{path} must define record {name!r} in namespace {NAMESPACE!r}")
    # History files are frozen snapshots: they must not follow today's version of a referenced file.
    resolved = _inline_references(raw, schema_dir, set()) if version is None else raw
    try:
        parsed = parse_schema(resolved)
    except Exception as exc:  # fastavro raises several types (SchemaParseException, UnknownType, ...)
        raise ValueError(f"{path} is not a valid Avro schema: {exc}") from exc
    assert isinstance(parsed, dict)  # checked above: a record schema
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        name=name,
        label=label,
        parsed=parsed,
        text=json.dumps(resolved, separators=(",", ":")),
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


def load_schema(label: str, schema_dir: Path = SCHEMA_DIR) -> Schema:
    """The parsed schema of a record ("VideoUploaded") or of one of its history versions ("X.v1")."""
    return schema_version(label, schema_dir).parsed


@functools.cache
def record_names(schema_dir: Path = SCHEMA_DIR) -> tuple[str, ...]:
    """Names of the current records, one per ``schemas/*.avsc`` file."""
    return tuple(sorted(path.stem for path in schema_dir.glob("*.avsc")))


@functools.cache
def known_versions(schema_dir: Path = SCHEMA_DIR) -> Mapping[bytes, SchemaVersion]:
    """Every schema a message may have been written with, by fingerprint: history first, current last."""
    by_fingerprint: dict[bytes, SchemaVersion] = {}
    history = sorted((schema_dir / "history").glob("*.v*.avsc"), key=lambda p: _split_label(p.stem))
    for label in [p.stem for p in history] + list(record_names(schema_dir)):
        version = schema_version(label, schema_dir)
        # A doc-only change keeps the fingerprint; the current label then wins, which is harmless.
        by_fingerprint[version.fingerprint] = version
    return by_fingerprint


def snapshot_schema(name: str, schema_dir: Path = SCHEMA_DIR) -> Path:
    """Copy the current ``<name>.avsc`` to ``history/<name>.v<N+1>.avsc`` (do this before changing it).

    Returns the existing snapshot instead when the current version is already in history.
    """
    current = schema_version(name, schema_dir)
    history_dir = schema_dir / "history"
    versions = [_split_label(p.stem)[1] or 0 for p in history_dir.glob(f"{name}.v*.avsc")]
    for path in history_dir.glob(f"{name}.v*.avsc"):
        if schema_version(path.stem, schema_dir).fingerprint == current.fingerprint:
            return path
    path = history_dir / f"{name}.v{max(versions, default=0) + 1}.avsc"
    history_dir.mkdir(exist_ok=True)
    path.write_text(json.dumps(json.loads(current.text), indent=2) + "\n", encoding="utf-8")
    known_versions.cache_clear()
    return path


# --- validation messages ---------------------------------------------------------------------------


def _describe(schema: Any) -> str:
    """A short human name for a schema, for error messages."""
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, list):
        return " or ".join(_describe(branch) for branch in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if "logicalType" in schema:
            return f"{kind} ({schema['logicalType']})"
        if kind == "enum":
            return "one of " + ", ".join(schema["symbols"])
        if kind == "array":
            return f"array of {_describe(schema['items'])}"
        if kind == "map":
            return f"map of {_describe(schema['values'])}"
        if kind in ("record", "error", "fixed"):
            return str(schema["name"]).rsplit(".", 1)[-1]
        return _describe(kind)
    return repr(schema)


def _fits(schema: Any, datum: Any) -> bool:
    try:
        return bool(validate(datum, schema, raise_errors=False))
    except Exception:  # a bare reference to a named type cannot be validated alone; the full check did
        return True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _find_problem(schema: Any, datum: Any, path: str, check_values: bool) -> tuple[str, str] | None:
    """The first problem in ``datum`` as (field path, what is wrong), or None.

    fastavro decides whether a value fits (and is fast); this walk says where it does not, with a path
    like ``segments[2].size_bytes``. With ``check_values`` off it looks only for what fastavro lets
    through silently: keys the schema does not define (dropped on write) and naive datetimes (taken as UTC,
    wrong by the local offset).
    """
    if isinstance(schema, list):
        # Our unions are [null, X]: a non-null value is checked as an X.
        others = [branch for branch in schema if branch != "null"]
        if len(others) == 1 and (datum is not None or "null" not in schema):
            return _find_problem(others[0], datum, path, check_values)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error") and isinstance(datum, Mapping):
            fields = {field["name"]: field for field in schema["fields"]}
            for key in datum:
                if key not in fields and key != _FAUST_METADATA_KEY:
                    return _join(path, str(key)), "is not in the schema (misspelt?)"
            for name, field in fields.items():
                if name in datum:
                    found = _find_problem(field["type"], datum[name], _join(path, name), check_values)
                    if found:
                        return found
                elif check_values and "default" not in field and not _fits(field["type"], None):
                    return _join(path, name), f"is missing, expected {_describe(field['type'])}"
            return None
        if kind == "array" and isinstance(datum, list | tuple):
            for index, item in enumerate(datum):
                found = _find_problem(schema["items"], item, f"{path}[{index}]", check_values)
                if found:
                    return found
            return None
        if kind == "map" and isinstance(datum, Mapping):
            for key, item in datum.items():
                found = _find_problem(schema["values"], item, f"{path}[{key!r}]", check_values)
                if found:
                    return found
            return None
        if str(schema.get("logicalType", "")).startswith("timestamp-"):
            if isinstance(datum, datetime) and datum.tzinfo is None:
                return path, "is a naive datetime; give it a timezone (UTC) so it is not misread"
    if check_values and not _fits(schema, datum):
        if datum is None:
            return path, f"is null, expected {_describe(schema)}"
        return path, f"is {_short_repr.repr(datum)} ({type(datum).__name__}), expected {_describe(schema)}"
    return None


# --- Confluent schema registry ---------------------------------------------------------------------


class SchemaRegistryClient:
    """The two calls of the Confluent Schema Registry REST API that the codec needs, cached.

    Blocking (urllib): each schema is registered once per subject and each id fetched once per process,
    so an asyncio caller blocks only on first use. Credentials may be given as ``https://key:secret@host``.
    """

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"schema registry URL must be http(s)://host[:port][/path], got {url!r}")
        self._auth: str | None = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._timeout_s = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) ``schema_text`` under ``subject``; returns its global schema id."""
        cache_key = (subject, schema_text)
        if cache_key not in self._ids:
            path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
            reply = self._request("POST", path, {"schema": schema_text})
            self._ids[cache_key] = int(reply["id"])
        return self._ids[cache_key]

    def get_schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        if schema_id not in self._schemas:
            reply = self._request("GET", f"/schemas/ids/{schema_id}", None)
            if reply.get("schemaType", "AVRO") != "AVRO":
                raise SchemaRegistryError(f"schema id {schema_id} is {reply['schemaType']}, not AVRO")
            self._schemas[schema_id] = str(reply["schema"])
        return self._schemas[schema_id]

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Accept": f"{self._CONTENT_TYPE}, application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = self._CONTENT_TYPE
        if self._auth:
            headers["Authorization"] = self._auth
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            try:
                detail = str(json.loads(detail).get("message", detail))
            except (ValueError, AttributeError):
                pass
            raise SchemaRegistryError(f"schema registry {method} {path}: HTTP {exc.code}: {detail}", exc.code) from exc
        except (OSError, ValueError) as exc:  # URLError, timeouts, a reply that is not JSON
            raise SchemaRegistryError(f"schema registry {method} {self.url}{path} failed: {exc}") from exc
        if not isinstance(reply, dict):
            raise SchemaRegistryError(f"schema registry {method} {path}: unexpected reply {reply!r}")
        return reply


# --- the codec -------------------------------------------------------------------------------------


def _is_flat(schema: Any) -> bool:
    """Whether ``_find_problem(check_values=False)`` has nothing to look for inside a field of this type:
    no record (unknown keys) and no timestamp (naive datetimes) below the field itself."""
    if isinstance(schema, str):
        return schema in _PRIMITIVES
    if isinstance(schema, list):
        return all(_is_flat(branch) for branch in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("enum", "fixed"):
            return True
        if kind == "array":
            return _is_flat(schema["items"]) and not _is_timestamp(schema["items"])
        if kind == "map":
            return _is_flat(schema["values"]) and not _is_timestamp(schema["values"])
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return True  # a logical type: a top-level timestamp is checked by RecordEncoder itself
    return False


def _is_timestamp(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_is_timestamp(branch) for branch in schema)
    return isinstance(schema, dict) and str(schema.get("logicalType", "")).startswith("timestamp-")


# A field's writer: the Avro bytes of a value, or None when the value is not one it writes (wrong type, out of
# range, naive datetime, …). It never decides that a value is invalid: None only sends it to fastavro.
_Write = Callable[[Any], bytes | None]
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_ONE_BYTE = tuple(bytes([n]) for n in range(128))
_NO_DEFAULT = object()
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


def _varint(n: int) -> bytes:
    """Avro's zig-zag variable-length encoding of an int or long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _write_boolean(v: Any) -> bytes | None:
    return b"\x01" if v is True else b"\x00" if v is False else None


def _write_int(v: Any) -> bytes | None:
    # type() rather than isinstance(): bool is an int to Python but not to Avro (fastavro refuses it).
    return _varint(v) if type(v) is int and _INT_RANGE[0] <= v <= _INT_RANGE[1] else None


def _write_long(v: Any) -> bytes | None:
    return _varint(v) if type(v) is int and _LONG_RANGE[0] <= v <= _LONG_RANGE[1] else None


def _write_double(v: Any) -> bytes | None:
    return _pack_double(v) if type(v) is float else None


def _write_float(v: Any) -> bytes | None:
    return _pack_float(v) if type(v) is float else None


def _write_string(v: Any) -> bytes | None:
    if type(v) is not str:
        return None
    data = v.encode()
    return (_ONE_BYTE[len(data) << 1] if len(data) < 64 else _varint(len(data))) + data


def _write_bytes(v: Any) -> bytes | None:
    if type(v) is not bytes:
        return None
    return (_ONE_BYTE[len(v) << 1] if len(v) < 64 else _varint(len(v))) + v


_PRIMITIVE_WRITERS: dict[str, _Write] = {
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "float": _write_float,
    "double": _write_double,
    "string": _write_string,
    "bytes": _write_bytes,
}


def _compile_type(schema: Any) -> _Write | None:
    """The writer of one (parsed) type, or None for a shape left to fastavro: records, named references,
    fixed, a bare null, unions other than [null, X], logical types other than timestamps."""
    if isinstance(schema, str):
        return _PRIMITIVE_WRITERS.get(schema)
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema or schema[0] == schema[1]:
            return None
        null_index = schema.index("null")
        other = _compile_type(schema[1 - null_index])
        if other is None:
            return None
        null_tag, other_tag = _varint(null_index), _varint(1 - null_index)

        def union(v: Any) -> bytes | None:
            if v is None:
                return null_tag
            body = other(v)
            return None if body is None else other_tag + body

        return union
    if not isinstance(schema, dict):
        return None
    kind, logical = schema.get("type"), schema.get("logicalType")
    if logical is None and isinstance(kind, str) and kind in _PRIMITIVE_WRITERS:
        return _PRIMITIVE_WRITERS[kind]
    if kind == "enum" and logical is None:
        symbols = {symbol: _varint(index) for index, symbol in enumerate(schema["symbols"])}

        def enum(v: Any) -> bytes | None:
            return symbols.get(v) if type(v) is str else None

        return enum
    if kind == "long" and logical in ("timestamp-millis", "timestamp-micros"):
        prepare = LOGICAL_WRITERS[f"long-{logical}"]  # fastavro's own conversion: the same number, to the unit

        def timestamp(v: Any) -> bytes | None:
            if isinstance(v, datetime):
                if v.tzinfo is None:
                    return None  # refused by the full path, which names the field
                v = prepare(v, schema)
            return _write_long(v)

        return timestamp
    if kind in ("map", "array") and logical is None:
        item = _compile_type(schema["values"] if kind == "map" else schema["items"])
        if item is None:
            return None
        if kind == "map":

            def map_(v: Any) -> bytes | None:
                if type(v) is not dict:
                    return None
                if not v:
                    return b"\x00"
                parts = [_varint(len(v))]  # one block of every entry, then the empty block
                for key, value in v.items():
                    key_bytes, value_bytes = _write_string(key), item(value)
                    if key_bytes is None or value_bytes is None:
                        return None
                    parts += (key_bytes, value_bytes)
                parts.append(b"\x00")
                return b"".join(parts)

            return map_

        def array(v: Any) -> bytes | None:
            if type(v) is not list:
                return None
            if not v:
                return b"\x00"
            parts = [_varint(len(v))]
            for value in v:
                value_bytes = item(value)
                if value_bytes is None:
                    return None
                parts.append(value_bytes)
            parts.append(b"\x00")
            return b"".join(parts)

        return array
    return None


def _compile_flat_record(parsed: Schema) -> Callable[[Mapping[str, Any]], bytes | None] | None:
    """A writer of a record whose fields are all of shapes ``_compile_type`` handles, else None.

    It accepts a strict subset of what fastavro validates (exact types, no coercion) and writes the bytes
    fastavro writes for it (tests/unit/test_avro_codec.py compares the two on random values of every such
    schema); whatever it declines (None) goes through fastavro. It costs ~8 µs for a PlaybackEvent where
    fastavro's validate-and-write takes ~22, most of it in picking the branch of each [null, X] union.
    """
    fields: list[tuple[str, _Write, Any]] = []
    for field in parsed["fields"]:
        write = _compile_type(field["type"])
        if write is None:
            return None
        fields.append((field["name"], write, field.get("default", _NO_DEFAULT)))

    def record(value: Mapping[str, Any]) -> bytes | None:
        parts = []
        for name, write, default in fields:
            v = value.get(name, default)
            if v is _NO_DEFAULT:
                return None
            body = write(v)
            if body is None:
                return None
            parts.append(body)
        return b"".join(parts)

    return record


class RecordEncoder:
    """Encodes values of one current record schema behind one framing header (``AvroCodec.encoder``).

    Everything that does not depend on the value is worked out once: the parsed schema, the header (the
    single-object fingerprint or the registry id), the field names, the timestamp fields and, for a record
    of flat fields (PlaybackEvent, the status events), a compiled writer. Three paths, fastest first, each
    giving the bytes of ``checked``:

    1. the compiled writer (``_compile_flat_record``), for values of exactly the schema's types;
    2. fastavro's validation without raising (its raising mode spends most of its time building exceptions
       for the null branch of every union: ~70 µs of a ~100 µs PlaybackEvent) and fastavro's writer;
    3. ``checked``, for a value that does not fit: it raises the error naming the field.

    The fast paths only decide which path runs, never what is accepted.
    """

    def __init__(self, version: SchemaVersion, header: bytes) -> None:
        self.version = version
        self.header = header
        fields = version.parsed["fields"]
        self._names = frozenset(field["name"] for field in fields) | {_FAUST_METADATA_KEY}
        self._timestamps = tuple(field["name"] for field in fields if _is_timestamp(field["type"]))
        # Nested records or timestamps: only the full walk can find unknown keys or naive datetimes there.
        self._walk = not all(_is_flat(field["type"]) for field in fields)
        self._compiled = _compile_flat_record(version.parsed)

    def __call__(self, value: Mapping[str, Any]) -> bytes:
        """``value`` encoded; ``SchemaValidationError`` (from ``checked``) when it does not fit."""
        compiled = self._compiled
        if compiled is not None and type(value) is dict and self._names.issuperset(value):
            try:
                written = compiled(value)
            except Exception:  # e.g. a lone surrogate in a string: the paths below say what is wrong
                written = None
            if written is not None:
                return self.header + written
        parsed = self.version.parsed
        if not (isinstance(value, Mapping) and validate(value, parsed, raise_errors=False)):
            return self.checked(value)
        if not self._names.issuperset(value):
            return self.checked(value)
        for name in self._timestamps:
            stamp = value.get(name)
            if isinstance(stamp, datetime) and stamp.tzinfo is None:
                return self.checked(value)
        if self._walk and _find_problem(parsed, value, "", check_values=False) is not None:
            return self.checked(value)
        body = io.BytesIO()
        body.write(self.header)
        fastavro.schemaless_writer(body, parsed, value if type(value) is dict else dict(value))
        return body.getvalue()

    def checked(self, value: Mapping[str, Any]) -> bytes:
        """The full path: fastavro's raising validation and the field walk, then the same write."""
        version = self.version
        record_name = version.name
        if not isinstance(value, Mapping):
            raise SchemaValidationError(record_name, "", f"needs a mapping, got {type(value).__name__}")
        try:
            validate(value, version.parsed, raise_errors=True)
        except ValidationError as exc:
            problem = _find_problem(version.parsed, value, "", check_values=True)
            if problem is None:  # the walk found nothing: fall back to fastavro's own words
                problem = (str(exc.errors[0].field), f"does not fit the schema: {exc.errors[0]}")
            raise SchemaValidationError(record_name, *problem) from None
        problem = _find_problem(version.parsed, value, "", check_values=False)
        if problem is not None:
            raise SchemaValidationError(record_name, *problem)
        body = io.BytesIO()
        body.write(self.header)
        fastavro.schemaless_writer(body, version.parsed, dict(value))
        return body.getvalue()


class AvroCodec:
    """Encode dicts to self-describing Avro message values and back.

    With a ``registry`` it writes the Confluent wire format (and needs the topic); without, single-object
    encoding. It reads both.
    """

    def __init__(self, registry: SchemaRegistryClient | None = None, *, schema_dir: Path = SCHEMA_DIR) -> None:
        self.registry = registry
        self.schema_dir = schema_dir
        self._registry_versions: dict[int, SchemaVersion] = {}
        self._encoders: dict[tuple[str, str | None], RecordEncoder] = {}

    @classmethod
    def from_settings(cls, kafka: KafkaSettings | None = None) -> AvroCodec:
        """The codec the settings ask for: Confluent framing when SCHEMA_REGISTRY_URL is set."""
        url = (kafka or load_settings().kafka).schema_registry_url
        return cls(SchemaRegistryClient(url) if url else None)

    def encode(self, record_name: str, value: Mapping[str, Any], *, topic: str | None = None) -> bytes:
        """Validate ``value`` against the current ``record_name`` schema and encode it.

        ``topic`` names the registry subject (``<topic>-value``); it is required only with a registry.
        """
        return self.encoder(record_name, topic=topic)(value)

    def encoder(self, record_name: str, *, topic: str | None = None) -> RecordEncoder:
        """The encoder of ``record_name`` values (for ``topic`` with a registry), made once and then reused.

        Making it loads the schema and, with a registry, registers it (blocking, on first use only); an
        asyncio caller that sends many values gets the encoder once, then encodes without blocking.
        """
        cache_key = (record_name, topic if self.registry is not None else None)
        found = self._encoders.get(cache_key)
        if found is not None:
            return found
        version = schema_version(record_name, self.schema_dir)
        if version.label != version.name:
            raise ValueError(f"encode with the current schema {version.name!r}, not history {record_name!r}")
        if self.registry is not None:
            if not topic:
                raise ValueError(f"encoding {record_name} for the schema registry needs the topic name")
            schema_id = self.registry.register(f"{topic}-value", version.text)
            header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        else:
            header = SINGLE_OBJECT_MARKER + version.fingerprint
        made = self._encoders[cache_key] = RecordEncoder(version, header)
        return made

    def decode(self, data: bytes, reader_record_name: str | None = None) -> dict[str, Any]:
        """Decode a message value into a dict shaped by the reader schema.

        The reader is the current version of the writer's record unless ``reader_record_name`` names one
        ("VideoStatusChanged", or a history version "VideoStatusChanged.v1"); a message of another record
        is refused.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UndecodableMessage(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        writer, body = self._writer_of(data)
        reader_label = reader_record_name or writer.name
        if _split_label(reader_label)[0] != writer.name:
            raise UndecodableMessage(f"message is a {writer.label}, expected a {reader_label}")
        try:
            reader = schema_version(reader_label, self.schema_dir)
        except ValueError as exc:
            raise UndecodableMessage(f"no reader schema for a {writer.label} message: {exc}") from exc
        stream = io.BytesIO(body)
        try:
            same = reader.fingerprint == writer.fingerprint
            record = fastavro.schemaless_reader(stream, writer.parsed, None if same else reader.parsed)
        except SchemaResolutionError as exc:
            raise UndecodableMessage(f"a {writer.label} message cannot be read as {reader.label}: {exc}") from exc
        except Exception as exc:  # corrupt bodies surface as EOFError, UnicodeDecodeError, IndexError, ...
            raise UndecodableMessage(f"corrupt or truncated {writer.label} body ({type(exc).__name__}: {exc})") from exc
        if stream.tell() != len(body):
            raise UndecodableMessage(f"{len(body) - stream.tell()} trailing bytes after a {writer.label} body")
        if not isinstance(record, dict):
            raise UndecodableMessage(f"a {writer.label} body did not decode to a record")
        return record

    def _writer_of(self, data: bytes) -> tuple[SchemaVersion, bytes]:
        """The writer schema named by the framing, and the body after it."""
        if data.startswith(SINGLE_OBJECT_MARKER):
            if len(data) < 10:
                raise UndecodableMessage(f"truncated single-object header ({len(data)} bytes)")
            version = known_versions(self.schema_dir).get(data[2:10])
            if version is None:
                raise UndecodableMessage(
                    f"unknown schema fingerprint {data[2:10].hex()}: neither a current schema nor one in "
                    "schemas/history (was a schema changed without `python -m common.avro snapshot`?)"
                )
            return version, data[10:]
        if data.startswith(CONFLUENT_MAGIC):
            if len(data) < 5:
                raise UndecodableMessage(f"truncated Confluent header ({len(data)} bytes)")
            return self._registry_version(int.from_bytes(data[1:5], "big")), data[5:]
        raise UndecodableMessage(
            f"not an Avro message: starts with {data[:4].hex() or 'nothing'}, "
            "expected c301 (single-object encoding) or 00 (Confluent wire format)"
        )

    def _registry_version(self, schema_id: int) -> SchemaVersion:
        if schema_id in self._registry_versions:
            return self._registry_versions[schema_id]
        if self.registry is None:
            raise UndecodableMessage(
                f"Confluent-framed message (schema id {schema_id}) but no SCHEMA_REGISTRY_URL is configured"
            )
        try:
            text = self.registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.status == 404:  # the message names an id the registry never issued
                raise UndecodableMessage(f"schema id {schema_id} is unknown to the registry") from exc
            raise
        try:
            parsed = parse_schema(json.loads(text))
        except Exception as exc:
            raise UndecodableMessage(f"registry schema id {schema_id} is not a usable Avro schema: {exc}") from exc
        full_name = str(parsed.get("name", "")) if isinstance(parsed, dict) else ""
        if not isinstance(parsed, dict) or not full_name.startswith(f"{NAMESPACE}."):
            raise UndecodableMessage(f"registry schema id {schema_id} is {full_name!r}, not a {NAMESPACE} record")
        name = full_name.removeprefix(f"{NAMESPACE}.")
        canonical = to_parsing_canonical_form(parsed)
        version = SchemaVersion(
            name=name,
            label=f"{name} (registry id {schema_id})",
            parsed=parsed,
            text=text,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        )
        self._registry_versions[schema_id] = version
        return version


@functools.cache
def default_codec() -> AvroCodec:
    """The process-wide codec built from the environment (see common/settings.py)."""
    return AvroCodec.from_settings()


# --- Faust -----------------------------------------------------------------------------------------


class FaustAvroCodec(faust.Codec):
    """A Faust codec for one record: ``app.topic(name, value_serializer=FaustAvroCodec("VideoUploaded"))``.

    Faust hands ``_dumps`` a dict (a model's ``to_representation()``) or a model; ``_loads`` returns a dict,
    which Faust turns into the topic's ``value_type`` model if one is set. ``topic`` is needed only when a
    schema registry is configured; ``codec`` defaults to ``default_codec()``.
    """

    def __init__(
        self,
        record_name: str,
        topic: str | None = None,
        codec: AvroCodec | None = None,
        children: tuple[CodecT, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        schema_version(record_name, codec.schema_dir if codec else SCHEMA_DIR)  # fail at setup on a bad name
        # Faust's clone() rebuilds a codec from self.kwargs, so every argument goes there.
        super().__init__(children=children, record_name=record_name, topic=topic, codec=codec, **kwargs)

    @property
    def _codec(self) -> AvroCodec:
        codec = self.kwargs["codec"]
        return codec if codec is not None else default_codec()

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, ModelT):
            obj = obj.to_representation()
        return self._codec.encode(self.kwargs["record_name"], obj, topic=self.kwargs["topic"])

    def _loads(self, s: bytes) -> Any:
        return self._codec.decode(s, self.kwargs["record_name"])


def register_faust_codec(record_name: str, *, topic: str | None = None, codec: AvroCodec | None = None) -> str:
    """Register a FaustAvroCodec under a name and return it, for ``value_serializer="avro:<Record>..."``."""
    name = f"avro:{record_name}" + (f":{topic}" if topic else "")
    faust_codecs.register(name, FaustAvroCodec(record_name, topic=topic, codec=codec))
    return name


# --- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m common.avro list`` | ``python -m common.avro snapshot <Record>``."""
    parser = argparse.ArgumentParser(prog="python -m common.avro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every known schema version and its fingerprint")
    snapshot = commands.add_parser("snapshot", help="copy schemas/<Record>.avsc into schemas/history")
    snapshot.add_argument("record")
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        print(snapshot_schema(args.record))
        return 0
    for version in sorted(known_versions().values(), key=lambda v: v.label):
        print(f"{version.fingerprint.hex()}  {version.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
