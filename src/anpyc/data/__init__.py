"""Data: IDX readers, fetching and verification, task streams."""

from anpyc.data.streams import Stream, Task, make_stream
from anpyc.data.taskdata import ConcatData, TaskData, iterate

__all__ = ["ConcatData", "Stream", "Task", "TaskData", "iterate", "make_stream"]
