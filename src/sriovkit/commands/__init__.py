"""Click command groups, one module per area; `sriovkit.cli` assembles them."""
