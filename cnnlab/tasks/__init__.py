"""Tasks: what each kind of problem means to every command (``task:`` in the experiment file).

`cnnlab.tasks.base` draws the seam (`Task`, `task_of`); one module per task fills it in.
Importing this package registers them all.
"""

from cnnlab.tasks import classification, multilabel, segmentation  # noqa: F401  (registers the tasks)
from cnnlab.tasks.base import TASKS, Task, register_task, task_of

__all__ = ["TASKS", "Task", "register_task", "task_of"]
