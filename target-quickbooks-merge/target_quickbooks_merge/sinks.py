"""Sinks only stage records into the ledger; the sync itself happens in one reconcile pass (reconcile.py).

Why: records arrive in any order and across runs, and the trigger decision needs several streams at once.
"""

from __future__ import annotations

import math
import typing as t
from datetime import datetime
from decimal import Decimal
from typing import cast

import fastjsonschema
import jsonschema
from singer_sdk import Target
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import BatchSink, Sink
from singer_sdk.sinks.core import BaseJSONSchemaValidator, JSONSchemaValidator

from sync_ledger import to_jsonable


class StagingHost(t.Protocol):
    """What a sink needs of its target (the target module imports the sinks, not the other way round)."""

    def register_sink(self, sink: Sink) -> None: ...

    def stage(self, stream: str, records: list[tuple[str, dict]]) -> None: ...

    def record_failure(self, stream: str, record_id: str | None, reason: str) -> None: ...


INVALID_KEY = "__invalid__"

# date-time strings are checked here (jsonschema only checks them when rfc3339-validator is installed), so a bad date
# becomes a failed row instead of aborting the whole run in the SDK's timestamp parsing.
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(datetime.fromisoformat(value))


def _compile(schema: dict[str, t.Any]) -> t.Callable[[t.Any], t.Any] | None:
    """fastjsonschema's compiled check (~20x faster than jsonschema's), date-time checked as above; None if it
    cannot compile this schema (then jsonschema alone is used)."""
    try:
        return fastjsonschema.compile(schema, formats={"date-time": _is_datetime_or_false}, use_default=False)
    except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError):
        return None


def _is_datetime_or_false(value: str) -> bool:
    try:
        return _is_datetime(value)
    except ValueError:
        return False


class _RecordingValidator(BaseJSONSchemaValidator):
    """Validates like the SDK but never raises: a bad row becomes a failed log row, not an aborted run.

    jsonschema's validation cost ~1 ms per record, the largest part of staging; records are checked by a compiled
    validator first and only the ones it rejects go through jsonschema, whose verdict and message count (so
    fastjsonschema's stricter built-in formats cannot reject a record jsonschema accepts)."""

    def __init__(self, schema: dict[str, t.Any], on_invalid: t.Callable[[str], None], stream_name: str = "") -> None:
        super().__init__(schema)
        self.stream_name = stream_name
        self._inner = JSONSchemaValidator(schema, validate_formats=True, format_checker=_FORMATS)
        self._fast = _compile(schema)
        self._on_invalid = on_invalid

    def validate(self, record: dict[str, t.Any]) -> None:
        try:
            if self._fast is None:
                raise fastjsonschema.JsonSchemaException("no compiled validator")
            self._fast(record)
        except fastjsonschema.JsonSchemaException:
            try:
                self._inner.validate(record)
            except InvalidRecord as exc:
                self._on_invalid(str(exc))
                return
        bad = _non_finite(record)
        if bad:  # NaN/Infinity pass "type: number" but are not JSON: QuickBooks could never take them
            self._on_invalid(f"{bad[0]}: {bad[1]} is not a finite number")
            return
        if self.stream_name == "invoices":  # a negative total is a credit: a Credit Memo (credit_notes.py)
            for i, line in enumerate(record.get("lineItems") or []):
                qty = line.get("quantity") if isinstance(line, dict) else None
                if isinstance(qty, (int, float, Decimal)) and qty <= 0:
                    self._on_invalid(f"lineItems[{i}].quantity: {qty} is not a positive quantity")
                    return


def _non_finite(value: t.Any, path: str = "") -> tuple[str, float] | None:
    """First NaN/Infinity in a record, with its path (e.g. lineItems[0].quantity)."""
    if isinstance(value, Decimal):  # the SDK reads JSON numbers as Decimal
        return None if value.is_finite() else (path or "value", float(value))
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "value", value)
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := _non_finite(item, f"{path}.{key}" if path else str(key))) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _non_finite(item, f"{path}[{i}]")) is not None:
                return found
    return None


class StagingSink(BatchSink):
    """Buffers a batch of records, then stages it into the ledger in one bulk write."""

    MAX_SIZE_DEFAULT = 2000

    def __init__(self, target: Target, stream_name: str, schema: dict, key_properties: t.Sequence[str] | None) -> None:
        self._qbm_target = t.cast("StagingHost", target)
        self._invalid_reason: str | None = None
        self.primary_key = list(key_properties or ["id"])
        # Key properties are checked by us (a record without an id becomes a failed row instead of an abort).
        super().__init__(target, stream_name, schema, key_properties=[])

    @property
    def datetime_error_treatment(self) -> DatetimeErrorTreatmentEnum:
        """Never abort on an unparsable date: the validator already marked that record failed."""
        return DatetimeErrorTreatmentEnum.NULL

    def setup(self) -> None:
        self._qbm_target.register_sink(self)

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        if not self.validate_schema:
            return None
        return _RecordingValidator(self.schema, self._note_invalid, self.stream_name)

    def _note_invalid(self, message: str) -> None:
        self._invalid_reason = message

    def preprocess_record(self, record: dict, context: dict) -> dict:
        """Undo the SDK's datetime parsing so staged payloads are plain, stable JSON."""
        return cast("dict", to_jsonable(record))

    def process_record(self, record: dict, context: dict) -> None:
        invalid, self._invalid_reason = self._invalid_reason, None
        pk = [record.get(k) for k in self.primary_key]
        if any(v is None for v in pk):
            self._qbm_target.record_failure(
                self.stream_name, None, f"record has no {'/'.join(self.primary_key)}: cannot be synced"
            )
            return
        record_id = "-".join(str(v) for v in pk)
        if invalid:
            record = {**record, INVALID_KEY: invalid}
        context.setdefault("records", []).append((record_id, record))

    def process_batch(self, context: dict) -> None:
        records = context.get("records") or []
        if records:
            self._qbm_target.stage(self.stream_name, records)
