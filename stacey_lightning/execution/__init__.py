"""Running a study across processes and machines, with nothing about Stacey in it: opening a storage
(``storage``), riding out a database outage (``outage``), noticing dead workers and re-queuing their
trials (``deaths``), worker processes and their supervisor (``supervisor``), DDP ranks that follow
rank zero (``ddp``), and the one module that touches Optuna's private API (``optuna_private``).
"""
