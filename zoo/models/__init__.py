"""Model builders, one module per architecture family."""
