"""Lightning integration: ``StaceyConfig`` (the one list of Stacey's hyperparameters), parameter groups by
kind, schedules, ``StaceyMixin`` and the ``StaceyMonitor`` callback."""
