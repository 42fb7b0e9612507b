"""The resolved schema: the spec made concrete against the data (task, feature types)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mlcycle.spec import ColumnType, Task


class ResolvedSchema(BaseModel):
    """What the processing stage decided about the columns; every later stage obeys it."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    task: Task  # never AUTO once resolved
    target: str
    features: dict[str, ColumnType]  # feature column -> type, in data order
    excluded: dict[str, str] = Field(default_factory=dict)  # column -> why it is not a feature
    # fairness: column -> type; kept in the curated data (a feature or not), evaluated by group
    sensitive: dict[str, ColumnType] = Field(default_factory=dict)
    classes: list[str] | None = None  # classification labels, sorted, as strings
    positive_class: str | None = None  # binary: the label scored as 1
    positive_class_reason: str | None = None  # why that one (the spec, or the minority)

    @property
    def is_classification(self) -> bool:
        return self.task in (Task.BINARY, Task.MULTICLASS)

    def columns_of(self, kind: ColumnType) -> list[str]:
        return [name for name, typ in self.features.items() if typ is kind]
