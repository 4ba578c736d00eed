"""The verbs, one module each: the Python API under the click layer (`cnnlab.cli`).

A command opens what it acts on (`cnnlab.rundir`), asks the run's task
(`cnnlab.tasks`) what to do, and uses the machinery under it (`cnnlab.data`,
`cnnlab.models`, `cnnlab.training`, `cnnlab.inference`, `cnnlab.export`,
`cnnlab.visual`). No command imports another command.
"""
