"""Training parts: losses, callbacks (validation, best model, guarded backup, NaN stop), strategies."""
