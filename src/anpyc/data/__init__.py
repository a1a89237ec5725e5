"""Data: IDX readers, fetching and verification, task streams, your own data sets."""

from anpyc.data.streams import Stream, Task, make_stream
from anpyc.data.taskdata import ConcatData, TaskData, iterate
from anpyc.data.user import (
    BatchIterable,
    DatasetData,
    as_task_data,
    stream_from_datasets,
    stream_from_source,
)

__all__ = [
    "BatchIterable",
    "ConcatData",
    "DatasetData",
    "Stream",
    "Task",
    "TaskData",
    "as_task_data",
    "iterate",
    "make_stream",
    "stream_from_datasets",
    "stream_from_source",
]
