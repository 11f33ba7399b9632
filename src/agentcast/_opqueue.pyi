"""Types of the compiled thread hand-off ring (ext/agentcast/_opqueue.pyx).

The ring is C-level only (``_opqueue.pxd``); the module exports nothing to Python.
"""
