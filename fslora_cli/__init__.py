"""The ``fslora`` command: dispatches to the reference, theory and bridge packages."""
